"""Why a context amortizer misses cells of the alpha x beta grid: data extrapolation, or plain NPE accuracy?

Usage: python benchmarks/sensitivity_grid_check.py [--folder benchmark-sensitivity-24k] [--data-sets 20]
Prints one JSON object.  Reads the amortizers ``sensitivity.py`` saved (``contexts``: the
conjugate Gaussian over prior power alpha and likelihood power beta; ``plain``: the same model
without contexts, trained as long) and measures, against the closed form, the share of cases within
0.1 posterior SD (means) and 10 % (SDs):

* ``grid_base_data``: the 5 x 5 grid on data sets simulated from the base model (as
  ``sensitivity.py`` does; a sensitivity analysis keeps the data and varies the context);
* ``grid_in_context_data``: each cell on data sets simulated from that cell's own context (no
  extrapolation in the data);
* ``base_context`` / ``plain``: the context network at alpha = beta = 1 and the plain amortizer,
  on the same 100 held-out data sets of the base model.
"""

from __future__ import annotations

from pathlib import Path

from _common import emit, parser, setup


def _summary(mean_err, sd_err) -> dict:
    import numpy as np

    m, s = np.asarray(mean_err), np.asarray(sd_err)
    return {"median_mean_error_sd": round(float(np.median(m)), 4), "median_sd_error": round(float(np.median(s)), 4),
            "share_within_both": round(float(np.mean((m < 0.1) & (s < 0.1))), 3),
            "worst_mean_error_sd": round(float(m.max()), 3), "worst_sd_error": round(float(s.max()), 3), "cases": len(m)}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--folder", default="benchmark-sensitivity-24k")
    p.add_argument("--data-sets", type=int, default=20)
    p.add_argument("--held-out", type=int, default=100)
    args = p.parse_args()
    device = setup(args)
    import torch

    from amortbayes import load
    from amortbayes.models import ConjugateGaussian, simulated_data_sets

    folder = Path(args.folder)
    contexts = load(folder / "contexts")
    config = contexts.info.to_dict()["config"]
    model = ConjugateGaussian(**config)
    base = ConjugateGaussian(**{k: v for k, v in config.items() if k != "contexts"})
    grid = [(a, b) for a in (0.5, 0.71, 1.0, 1.41, 2.0) for b in (0.5, 0.71, 1.0, 1.41, 2.0)]
    result: dict = {"folder": str(folder), "data_sets": args.data_sets}
    base_sets = simulated_data_sets(base, args.data_sets, seed=11)
    for how in ("base_data", "in_context_data"):
        mean_err, sd_err = [], []
        for k in range(args.data_sets):
            g = torch.Generator().manual_seed(1000 + k)
            for a, b in grid:
                if how == "base_data":
                    x = base_sets[k][1]
                else:
                    c = {"alpha": torch.tensor([a]), "beta": torch.tensor([b])}
                    theta = model.sample_prior(1, g, context=c)
                    n = int(torch.randint(base.n_obs[0], base.n_obs[1] + 1, (1,), generator=g))
                    x = model.simulate_data(theta, n, g, context=c)[0].numpy()
                d = contexts.sample_contexts(x, [{"alpha": a, "beta": b}], 4000, seed=k)[0, :, 0]
                mu, sd = base.posterior(x, alpha=a, beta=b)
                mean_err.append(abs(d.mean() - mu[0, 0]) / sd[0, 0])
                sd_err.append(abs(d.std() / sd[0, 0] - 1))
        result[f"grid_{how}"] = _summary(mean_err, sd_err)
    plain = load(folder / "plain")
    for name, amortizer in (("base_context", contexts), ("plain", plain)):
        mean_err, sd_err = [], []
        for k, (_, x) in enumerate(simulated_data_sets(base, args.held_out, seed=11)):
            d = (amortizer.sample_contexts(x, [{}], 4000, seed=k)[0] if amortizer.contexts
                 else amortizer.sample_array(x, 4000, seed=k))[:, 0]
            mu, sd = base.posterior(x)
            mean_err.append(abs(d.mean() - mu[0, 0]) / sd[0, 0])
            sd_err.append(abs(d.std() / sd[0, 0] - 1))
        result[name] = _summary(mean_err, sd_err)
    emit(result, device)


if __name__ == "__main__":
    main()
