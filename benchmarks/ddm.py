"""Hierarchical diffusion models on speed_acc (accuracy condition, block 4): amortized vs Stan, and LOGO elpd_diff.

Usage: python benchmarks/ddm.py [--epochs 30 --iterations 200] [--no-stan | --stan-chains 4 --stan-warmup 1000
--stan-draws 1000] [--coding nonword_upper | word_upper | accuracy] [--out DIR]
Trains the shared-bias (eq. 22) and subject-bias (eq. 23) models, fits both to the 17
participants, compares the global marginals with Stan (unless --no-stan), and computes
leave-one-participant-out ELPD for both from the amortizers alone (no refits), with
elpd_diff and its SE as in Habermann et al. (2024), Figure 9 (drawn to logo.png). With Stan,
the same ELPDs from Stan's draws: Pareto-smoothed importance sampling of the full-data
posterior of the globals into each LOGO posterior (psis_logo), each participant's own
parameters integrated out with the local flow as the proposal. Also the importance-sampled
draws (the amortized posterior as the proposal, each participant's likelihood estimated from
--importance local draws, up to --rounds adaptive rounds of --proposals; importance_draws)
against Stan. Prints one JSON object.
Responses are coded by the response given (stimulus/response coding), upper boundary =
"nonword" by default.  The paper does not say which coding it used; accuracy coding
(upper = correct; 95.6 % correct) puts Stan's mu_nu (1.9) five prior SDs above its Normal(0.5, 0.3) prior
and leaves a "bias" towards an answer the participant cannot know in advance, while the
paper chose its priors by prior predictive checks and reads beta as a bias; with
upper = "nonword" (52 % of responses) mu_nu's posterior lies inside its prior, with
upper = "word" three prior SDs below it.  See python/amortbayes/data/PROVENANCE.md.
A run whose --out folder holds finished checkpoints reuses the trained networks
(training does not depend on the coding); train_seconds is the checkpointed training time.
--init DIR continues training the amortizers saved in an earlier run's --out folder DIR
(their standardization kept, a new learning-rate schedule of --epochs); train_seconds and
train_simulations then include the earlier run's (from DIR's checkpoints).
Stan's fits are kept in the --out folder (comparison_*_stan.npz) and read back by a rerun with
the same data and Stan settings; stan_seconds is then the stored fit's time and the entry names
the file (stan_read_back_from).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from _common import (compare_with_reference, emit, median_ms, parser, rounded_diagnostics, setup, train_settings,
                     training_arguments)
from amortbayes import MultilevelAmortizer, fit, load, save
from amortbayes.amortizers.multilevel import MultilevelSettings, default_settings
from amortbayes.data import load_speed_acc
from amortbayes.diagnostics import elpd_compare
from amortbayes.models import HierarchicalDDM
from amortbayes.plots import plot_logo
from amortbayes.train import CHECKPOINT_FILE


def main() -> None:
    p = parser(__doc__)
    training_arguments(p, epochs=30, iterations=200, lr=5e-4)
    p.add_argument("--no-stan", action="store_true")
    p.add_argument("--stan-chains", type=int, default=4)
    p.add_argument("--stan-warmup", type=int, default=1000)
    p.add_argument("--stan-draws", type=int, default=1000, help="per chain (the Wiener density makes Stan slow)")
    p.add_argument("--variants", default="shared,subject")
    p.add_argument("--also-simulated", action="store_true",
                   help="also compare with Stan on one data set simulated from the prior with speed_acc's design")
    p.add_argument("--proposals", type=int, default=4000, help="proposals of the importance-sampled draws (per round)")
    p.add_argument("--importance", type=int, default=32,
                   help="local draws per proposal and participant that estimate its likelihood in the importance weights")
    p.add_argument("--rounds", type=int, default=4,
                   help="importance_draws(rounds=): adaptive proposals while the weights' Pareto k exceeds 0.5")
    p.add_argument("--coding", default="nonword_upper", choices=sorted(CODINGS),
                   help="which response is the upper boundary (see the module docstring)")
    p.add_argument("--init", help="continue training the amortizers saved in this earlier --out folder")
    p.add_argument("--hidden", type=int, default=None, help="width of the summary networks (default: the package's)")
    p.add_argument("--group-summary-dim", type=int, default=None,
                   help="size of a participant's learned embedding (default: the package's)")
    p.add_argument("--out", default="benchmark-ddm")
    args = p.parse_args()
    device = setup(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df = load_speed_acc()
    df = df.assign(choice=CODINGS[args.coding](df).astype(float))
    kw = {"group": "id", "columns": {"rt": "rt", "choice": "choice"}}
    result: dict = {"data": f"speed_acc accuracy block 4: {df['id'].nunique()} participants, {len(df)} trials",
                    "coding": args.coding, "upper_boundary_share": round(float(df["choice"].mean()), 4)}
    logo, stan_logo = {}, {}
    for bias in args.variants.split(","):
        model = HierarchicalDDM(bias=bias)
        amortizer = (load(Path(args.init) / f"amortizer_{bias}", model=model) if args.init
                     else MultilevelAmortizer(model, _network_settings(model, args)))
        settings = train_settings(args)
        t0 = time.perf_counter()
        history = fit(amortizer, model, settings=settings, device=args.device,
                      checkpoint_dir=out / f"ckpt_{bias}", resume=(out / f"ckpt_{bias}" / "checkpoint.pt").exists(),
                      adapt=not args.init, progress=False)
        # the checkpointed epochs' own times: a run that resumes (or reuses) a training reports all of it
        train_s = float(history["seconds"].sum()) if len(history) else time.perf_counter() - t0
        before = _earlier_training(Path(args.init) / f"ckpt_{bias}") if args.init else {"seconds": 0.0, "steps": 0}
        amortizer.to("cpu").eval()
        save(amortizer, out / f"amortizer_{bias}")
        data = amortizer.prepare(df, **kw)
        fit_ms = median_ms(lambda: amortizer.sample_draws(data, 4000), 3, torch.device("cpu"), warmup=1)
        amortized = amortizer.sample_draws(data, 4000, seed=1).to_frame(0)
        t0 = time.perf_counter()
        loo = amortizer.logo(data, model, n=500, importance=8, seed=0)
        logo_s = time.perf_counter() - t0
        loo.to_csv(out / f"logo_{bias}.csv", index=False)
        logo[bias] = loo
        entry = {
            # data the prior predictive never produced (see DataRange): the amortizer extrapolates there
            "outside_training_range": [
                amortizer.data_range.describe(k, v) for _, k, v in amortizer.data_range.outside(data.x, data.mask)
            ],
            "network": {"hidden": amortizer.settings.hidden, "group_summary_dim": amortizer.settings.group_summary_dim},
            "train_seconds": round(before["seconds"] + train_s, 1),
            "train_simulations": (before["steps"] + settings.epochs * settings.iterations_per_epoch) * settings.batch_size,
            **({"continued_from": {"train_seconds": round(before["seconds"], 1), "steps": before["steps"],
                                   "final_val_loss": before["val_loss"]}} if args.init else {}),
            "final_val_loss": round(float(history["val_loss"].iloc[-1]), 3),
            "amortized_fit_ms_4000_draws": round(fit_ms, 1),
            "logo_seconds_all_groups": round(logo_s, 2),
            "elpd_logo": round(float(loo["elpd"].sum()), 2),
            "logo_max_mc_se": round(float(loo["mc_se"].max()), 3),
        }
        entry["tau_draws_above_fastest_response"] = _tau_above_fastest(amortized, df)
        draw_sets, entry["importance_sampled"] = _importance(amortizer, model, data, amortized, args)
        if not args.no_stan:
            stan, metrics = _against_stan(model, draw_sets, df, args, out / f"comparison_{bias}")
            entry["logo_vs_stan_psis"], stan_logo[bias] = _logo_vs_stan(amortizer, model, data, stan.draws, loo,
                                                                        out / f"logo_stan_{bias}")
            stan_s = round(stan.seconds, 1)
            entry.update({
                "stan_seconds": stan_s,
                **({"stan_read_back_from": _stan_file(out / f"comparison_{bias}")} if stan.from_file else {}),
                "stan_chains_warmup_draws": [args.stan_chains, args.stan_warmup, args.stan_draws],
                "speedup_fit_vs_stan": round(stan_s / (fit_ms / 1000), 1),
                **metrics.pop("amortized"),
            })
            entry["importance_sampled"].update(metrics.get("importance_sampled", {}))
            if args.also_simulated:  # the same design, data from the model: inside the training range
                sim = _simulated_like(model, df)
                sim_data = amortizer.prepare(sim, **kw)
                sim_amortized = amortizer.sample_draws(sim_data, 4000, seed=1).to_frame(0)
                sim_sets, sim_is = _importance(amortizer, model, sim_data, sim_amortized, args)
                _, metrics = _against_stan(model, sim_sets, sim, args, out / f"comparison_{bias}_simulated")
                sim_is.update(metrics.get("importance_sampled", {}))
                entry["simulated_data_set"] = {**metrics["amortized"], **_simulated_logo(amortizer, model, sim, kw),
                                               "tau_draws_above_fastest_response": _tau_above_fastest(sim_amortized, sim),
                                               "importance_sampled": sim_is}
        result[f"ddm_{bias}_bias"] = entry
    if len(logo) == 2:
        cmp = elpd_compare(logo["subject"]["elpd"].to_numpy(), logo["shared"]["elpd"].to_numpy(),
                           ("subject_bias", "shared_bias"))
        result["logo_elpd_diff_subject_minus_shared"] = round(float(cmp["elpd_diff"].item()), 2)
        result["logo_elpd_diff_se"] = round(float(cmp["se_diff"].item()), 2)
        plot_logo(logo["subject"], logo["shared"], out / "logo.png", labels=("subject bias", "shared bias"))
    if len(stan_logo) == 2:
        cmp = elpd_compare(stan_logo["subject"]["elpd"].to_numpy(), stan_logo["shared"]["elpd"].to_numpy())
        result["logo_elpd_diff_stan_psis"] = round(float(cmp["elpd_diff"].item()), 2)
        result["logo_elpd_diff_stan_psis_se"] = round(float(cmp["se_diff"].item()), 2)
    emit(result, device)


CODINGS = {
    "nonword_upper": lambda df: 1 - df["response_upper"],
    "word_upper": lambda df: df["response_upper"],
    "accuracy": lambda df: df["correct"],
}


def _tau_above_fastest(draws, frame) -> dict:
    """Share of draws whose non-decision time is not below the participant's fastest response (zero likelihood there)."""
    fastest = frame.groupby("id", observed=True)["rt"].min()
    share = {str(g): float((np.exp(draws[f"log_tau[{g}]"]) >= rt).mean()) for g, rt in fastest.items()}
    return {"overall": round(float(np.mean(list(share.values()))), 4), "worst_participant": round(max(share.values()), 4)}


def _network_settings(model, args) -> MultilevelSettings:
    """The package's default settings for ``model``, with --hidden / --group-summary-dim where given."""
    s = default_settings(model)
    return dataclasses.replace(s, hidden=args.hidden or s.hidden,
                               group_summary_dim=args.group_summary_dim or s.group_summary_dim)


def _earlier_training(ckpt_dir: Path) -> dict:
    """Seconds, optimizer steps and final validation loss of the training checkpointed in ``ckpt_dir``."""
    saved = torch.load(ckpt_dir / CHECKPOINT_FILE, weights_only=True, map_location="cpu")
    history = saved["history"]
    steps = int(next(iter(saved["optimizer"]["state"].values()))["step"])  # Adam's count of updates
    return {"seconds": float(sum(h["seconds"] for h in history)), "steps": steps,
            "val_loss": round(float(history[-1]["val_loss"]), 3)}


def _importance(amortizer, model, data, amortized, args) -> tuple[dict, dict]:
    """The draw sets to compare with Stan (amortized, and importance-sampled unless that fails) and the weights' diagnostics.

    The amortized posterior is the proposal, the exact Wiener likelihood gives the weights.
    """
    t0 = time.perf_counter()
    draw_sets = {"amortized": amortized}
    try:
        weighted = amortizer.importance_draws(data, model, 2000, proposals=args.proposals, importance=args.importance,
                                              rounds=args.rounds, seed=1, warn=False, progress=False)
    except ValueError as err:  # every proposal outside the likelihood's support
        entry = {"failed": str(err)}
    else:
        entry = rounded_diagnostics(weighted.diagnostics)
        draw_sets["importance_sampled"] = weighted.to_frame(0)
    entry["seconds"] = round(time.perf_counter() - t0, 1)
    return draw_sets, entry


def _stan_file(path) -> str:
    """Where ``_against_stan`` keeps the Stan fit of the comparison written to ``{path}.csv``."""
    return f"{path}_stan.npz"


def _against_stan(model, draw_sets: dict, frame, args, path) -> tuple[object, dict]:
    """Stan's fit of ``frame`` and the comparison of the global marginals with each of ``draw_sets``.

    Writes ``{path}.csv`` (the first set) and ``{path}_{name}.csv`` (the others); keeps Stan's
    fit in ``{path}_stan.npz`` and reads it back on a rerun with the same data and settings.
    """
    from amortbayes.reference import fit_stan, label_groups
    from amortbayes.simulation import group_levels

    stan = fit_stan(model.name, model.stan_data(frame, group="id", rt="rt", choice="choice"),
                    chains=args.stan_chains, warmup=args.stan_warmup, draws=args.stan_draws, seed=1,
                    file=_stan_file(path))
    ref = label_groups(stan.draws, model.local_parameter_names, group_levels(frame["id"], drop_unused=True))
    names = list(model.parameter_names)
    metrics = {}
    for i, (key, draws) in enumerate(draw_sets.items()):
        table, against = compare_with_reference(draws, ref, names)
        table.to_csv(f"{path}.csv" if i == 0 else f"{path}_{key}.csv")
        metrics[key] = {"stan_max_rhat": round(stan.max_rhat, 4), **against}
    return stan, metrics


def _logo_vs_stan(amortizer, model, data, stan_draws, loo, path) -> tuple[dict, object]:
    """The amortized LOGO ELPDs ``loo`` against Stan's: PSIS over Stan's full-data draws of the globals.

    Each left-out group's likelihood, its own parameters integrated out by importance
    sampling with the local flow (:meth:`group_log_evidence`), reweights Stan's draws into
    the LOGO posterior (:func:`psis_logo`); the global flow plays no part.  Writes
    ``{path}.csv``.
    """
    from amortbayes.diagnostics import psis_logo

    t0 = time.perf_counter()
    log_px = amortizer.group_log_evidence(data, model, stan_draws, importance=32, seed=0)
    ref = psis_logo(log_px, list(loo["group"]))
    seconds = time.perf_counter() - t0
    ref.assign(elpd_amortized=loo["elpd"].to_numpy()).to_csv(f"{path}.csv", index=False)
    gap = loo["elpd"].to_numpy() - ref["elpd"].to_numpy()
    return {
        "elpd_sum": {"amortized": round(float(loo["elpd"].sum()), 2), "stan_psis": round(float(ref["elpd"].sum()), 2)},
        "elpd_gap_amortized_minus_stan_max_abs": round(float(abs(gap).max()), 2),
        "elpd_gap_amortized_minus_stan_mean": round(float(gap.mean()), 2),
        "pareto_k_max": round(float(ref["khat"].max()), 3),
        "seconds": round(seconds, 1),
    }, ref


def _simulated_logo(amortizer, model, sim, kw) -> dict:
    """LOGO Monte Carlo SEs on the simulated data set, where the amortizer is inside its training range."""
    loo = amortizer.logo(amortizer.prepare(sim, **kw), model, n=500, importance=8, seed=0)
    return {"logo_max_mc_se": round(float(loo["mc_se"].max()), 3),
            "logo_median_mc_se": round(float(loo["mc_se"].median()), 3)}


def _simulated_like(model, df):
    """One data set from the model's prior predictive with ``df``'s groups and trial counts (seeded)."""
    import numpy as np
    import pandas as pd

    sizes = df.groupby("id", observed=True).size()
    batch = model.simulate(1, torch.Generator().manual_seed(7), n_groups=len(sizes), n_obs=int(sizes.max()))
    x, mask = batch["x"][0].numpy(), batch["mask"][0].numpy() > 0
    rows = [(j, *x[j, i]) for j in range(x.shape[0]) for i in np.flatnonzero(mask[j])]
    return pd.DataFrame(rows, columns=["id", "rt", "choice"])


if __name__ == "__main__":
    main()
