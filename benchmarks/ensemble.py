"""Deep ensembles: does the members' disagreement flag data the simulator cannot make?

Usage: python benchmarks/ensemble.py [--members 5] [--epochs E --iterations I] [--sleep-budget STEPS] [--out DIR]
Prints one JSON object.  Two cases, each an EnsembleAmortizer trained through the one fit():

* conjugate Gaussian (``ConjugateGaussian(dim=1, n_obs=(10, 30))``): disagreement scores of 50
  well-specified data sets against 50 from a misspecified simulator (noise SD 5 instead of 1),
  their medians, percentiles among held-out simulations and the share flagged (above the
  simulations' 99th percentile);
* sleepstudy ``Reaction ~ Days + (Days | Subject)`` (gaussian formula model, its multilevel
  networks): the observed data's score and percentile (its residual SDs differ between
  subjects far more than the homoscedastic model allows), against 20 data sets simulated from
  the model at prior draws over the same design.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from _common import emit, parser, setup, train_or_load, training_arguments


def _summary(table) -> dict:
    return {"median_score": round(float(table["score"].median()), 5),
            "median_percentile": round(float(table["percentile"].median()), 1),
            "flagged_share": round(float(table["flagged"].mean()), 3), "data_sets": len(table)}


def main() -> None:
    p = parser(__doc__)
    training_arguments(p, epochs=20, iterations=200, lr=5e-4)
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--data-sets", type=int, default=50, help="well- and misspecified conjugate data sets each")
    p.add_argument("--sleep-budget", type=int, default=5000, help="training steps of the sleepstudy ensemble")
    p.add_argument("--out", default="benchmark-ensemble")
    args = p.parse_args()
    device = setup(args)
    import torch

    from amortbayes import TrainSettings, fit, load, save
    from amortbayes.amortizers import EnsembleAmortizer, EnsembleSettings
    from amortbayes.data import load_sleepstudy
    from amortbayes.formula.fit import batch_size, network_settings
    from amortbayes.formula.model import FormulaModel
    from amortbayes.formula.terms import parse_terms
    from amortbayes.models import ConjugateGaussian, simulated_data_sets

    warnings.simplefilter("ignore")
    out = Path(args.out)
    result = {"members": args.members}
    model = ConjugateGaussian(dim=1, n_obs=(10, 30))
    ens = train_or_load(lambda m: EnsembleAmortizer(m, EnsembleSettings(members=args.members)), model,
                        out / "conjugate", args, result, "conjugate")
    good = ens.disagreement([x for _, x in simulated_data_sets(model, args.data_sets, seed=3)])
    wide = ConjugateGaussian(dim=1, n_obs=(10, 30), noise_sd=5.0)
    bad = ens.disagreement([x for _, x in simulated_data_sets(wide, args.data_sets, seed=3)])
    result["conjugate"] = {"well_specified": _summary(good), "noise_sd_5": _summary(bad),
                           "score_ratio_of_medians": round(float(bad["score"].median() / good["score"].median()), 1)}

    sleep = load_sleepstudy()
    fm = FormulaModel(parse_terms("Reaction ~ Days + (Days | Subject)", sleep), "gaussian")
    folder = out / "sleepstudy"
    if (folder / "config.json").exists():
        sens = load(folder)
    else:
        sens = EnsembleAmortizer(fm, EnsembleSettings(members=args.members, multilevel=network_settings(fm)))
        epochs = -(-args.sleep_budget // 500)
        t0 = time.perf_counter()
        fit(sens, fm, settings=TrainSettings(epochs=epochs, iterations_per_epoch=-(-args.sleep_budget // epochs),
                                             batch_size=batch_size(fm)), progress=False, seed=0)
        result["sleepstudy_train_seconds"] = round(time.perf_counter() - t0, 1)
        save(sens, folder)
    observed = sens.disagreement(fm.observed_frame(), group="Subject")
    batch = fm.simulate(20, torch.Generator().manual_seed(11))
    simulated = sens.disagreement({k: batch[k].numpy() for k in ("x", "mask", "group_mask")})
    result["sleepstudy"] = {"observed_score": round(float(observed["score"][0]), 5),
                            "observed_percentile": round(float(observed["percentile"][0]), 1),
                            "observed_flagged": bool(observed["flagged"][0]),
                            "simulated": _summary(simulated), "budget": args.sleep_budget}
    emit({"benchmark": "ensemble", **result}, device)


if __name__ == "__main__":
    main()
