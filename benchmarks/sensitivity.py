"""Sensitivity-aware amortization of the conjugate Gaussian model against closed forms, Stan refits and importance reweighting.

Usage: python benchmarks/sensitivity.py [--epochs E --iterations I] [--data-sets 20] [--sweep-points 50] [--no-stan] [--out DIR]
Prints one JSON object.  Trains (or loads from --out) three PosteriorAmortizers with the
default networks on ``ConjugateGaussian(dim=1)``:

* ``contexts``: prior power alpha and likelihood power beta in [0.5, 2] and the likelihood
  family (normal or Student-t with 3 df) as contexts;
* ``plain``: the same model without contexts (for the cost per step);
* ``student``: the Student-t model alone (the separately trained reference of the discrete
  context).

Reports: seconds per training step with and without contexts (bar: at most 1.5x); on held-out
data sets, the largest error over an alpha x beta grid of the amortized posterior mean (in
posterior SDs) and SD (relative) against the closed form (bar 0.1 and 10 %); the C2ST between
the contexts amortizer's Student-t posterior and the separately trained one's; priorsense's
power-scaling sensitivity from the network against importance reweighting of exact posterior
draws (same flags?); the time of a 50-point sweep against 50 Stan refits of the power-scaled
program (stan/conjugate_gaussian_powered.stan) in the same run.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from _common import emit, parser, setup, train_or_load, training_arguments


def main() -> None:
    p = parser(__doc__)
    training_arguments(p, epochs=30, iterations=200, lr=5e-4)
    p.add_argument("--data-sets", type=int, default=20)
    p.add_argument("--c2st-sets", type=int, default=10, help="Student-t data sets of the discrete-context C2ST")
    p.add_argument("--sweep-points", type=int, default=50, help="contexts of the timed sweep (and Stan refits)")
    p.add_argument("--no-stan", action="store_true", help="skip the Stan refits")
    p.add_argument("--out", default="benchmark-sensitivity")
    args = p.parse_args()
    device = setup(args)
    from amortbayes.amortizers import PosteriorAmortizer
    from amortbayes.diagnostics import c2st
    from amortbayes.diagnostics.powerscale import powerscale_from_draws
    from amortbayes.models import ConjugateGaussian, simulated_data_sets
    from amortbayes.sensitivity import choice, power_scale, powerscale_sensitivity, sensitivity_sweep

    out = Path(args.out)
    spaces = {"alpha": power_scale("prior"), "beta": power_scale("likelihood"),
              "likelihood": choice("normal", "student_t")}
    models = {"contexts": ConjugateGaussian(dim=1, contexts=spaces), "plain": ConjugateGaussian(dim=1),
              "student": ConjugateGaussian(dim=1, likelihood="student_t")}
    result = {"train_steps": args.epochs * args.iterations}
    nets = {name: train_or_load(PosteriorAmortizer, m, out / name, args, result, name) for name, m in models.items()}
    steps = args.epochs * args.iterations
    per_step = {n: result.get(f"{n}_train_seconds", float("nan")) / steps for n in ("contexts", "plain")}
    result["seconds_per_step"] = {k: round(v, 4) for k, v in per_step.items()}
    result["context_cost_ratio"] = round(per_step["contexts"] / per_step["plain"], 3)

    warnings.simplefilter("ignore")
    base = ConjugateGaussian(dim=1)
    amortizer = nets["contexts"]
    grid = [(a, b) for a in (0.5, 0.71, 1.0, 1.41, 2.0) for b in (0.5, 0.71, 1.0, 1.41, 2.0)]
    mean_err, sd_err = [], []
    psens_rows = []
    for k, (_, x) in enumerate(simulated_data_sets(base, args.data_sets, seed=11)):
        contexts = [{"alpha": a, "beta": b} for a, b in grid]
        draws = amortizer.sample_contexts(x, contexts, 4000, seed=k)[..., 0]
        for (a, b), d in zip(grid, draws):
            mu, sd = base.posterior(x, alpha=a, beta=b)
            mean_err.append(abs(d.mean() - mu[0, 0]) / sd[0, 0])
            sd_err.append(abs(d.std(ddof=1) / sd[0, 0] - 1))
        if k < 10:  # power-scaling sensitivity: network vs importance reweighting of exact draws
            mu, sd = base.posterior(x)
            exact = np.random.default_rng(k).normal(mu[0, 0], sd[0, 0], size=(8000, 1))
            ref = powerscale_from_draws(exact, base.log_prior(exact).numpy(), base.log_likelihood_rows(x, exact))
            net = powerscale_sensitivity(amortizer, x, n=8000, seed=k)
            psens_rows.append({"n": len(x),
                               "prior": [round(float(net["prior"][0]), 4), round(float(ref["prior"][0]), 4)],
                               "likelihood": [round(float(net["likelihood"][0]), 4),
                                              round(float(ref["likelihood"][0]), 4)],
                               "same_flag": bool(net["diagnosis"][0] == ref["diagnosis"][0])})
    result["grid"] = {"alpha_beta": grid, "data_sets": args.data_sets,
                      "max_mean_error_sd": round(float(np.max(mean_err)), 4),
                      "median_mean_error_sd": round(float(np.median(mean_err)), 4),
                      "max_sd_error": round(float(np.max(sd_err)), 4),
                      "median_sd_error": round(float(np.median(sd_err)), 4),
                      "share_within_bars": round(float(np.mean((np.array(mean_err) < 0.1) & (np.array(sd_err) < 0.1))), 4)}
    result["powerscale_network_vs_reweighting"] = {
        "per_data_set": psens_rows, "same_flags": sum(r["same_flag"] for r in psens_rows),
        "median_abs_diff_prior": round(float(np.median([abs(r["prior"][0] - r["prior"][1]) for r in psens_rows])), 4),
        "median_abs_diff_likelihood": round(float(np.median([abs(r["likelihood"][0] - r["likelihood"][1])
                                                             for r in psens_rows])), 4)}

    # the discrete context against a separately trained Student-t amortizer, on Student-t data
    student = models["student"]
    scores = []
    for k, (_, x) in enumerate(simulated_data_sets(student, args.c2st_sets, seed=13)):
        a = amortizer.sample_array(x, 2000, seed=k, context={"likelihood": "student_t"})
        b = nets["student"].sample_array(x, 2000, seed=k + 100)
        scores.append(float(c2st(a, b)))
    result["student_t_context_vs_separate_c2st"] = {"median": round(float(np.median(scores)), 3),
                                                    "max": round(float(np.max(scores)), 3)}

    # a 50-point sweep against 50 Stan refits of the same power-scaled posteriors
    _, x = simulated_data_sets(base, 1, seed=17)[0]
    alphas = np.geomspace(0.5, 2.0, args.sweep_points)
    t0 = time.perf_counter()
    sweep = sensitivity_sweep(amortizer, x, {"alpha": alphas}, n=4000)
    result["sweep_seconds"] = round(time.perf_counter() - t0, 3)
    try:
        from amortbayes.reference.stan import fit_stan

        if args.no_stan:
            raise RuntimeError("--no-stan")

        t0 = time.perf_counter()
        stan_means = []
        for a in alphas:
            fit = fit_stan("conjugate_gaussian_powered", {
                "N": len(x), "y": x[:, 0], "prior_mean": 0.0, "prior_sd": 1.0, "noise_sd": 1.0, "alpha": float(a),
                "beta": 1.0, "student": 0, "nu": 3.0}, chains=4, warmup=500, draws=1000)
            stan_means.append(float(np.mean(fit.draws["mu"])))
        result["stan_refits_seconds"] = round(time.perf_counter() - t0, 1)
        exact = [base.posterior(x, alpha=a)[0][0, 0] for a in alphas]
        result["sweep_vs_stan_max_abs_mean_diff"] = round(float(np.max(np.abs(
            sweep["mean"].to_numpy() - np.array(stan_means)))), 4)
        result["stan_vs_exact_max_abs_mean_diff"] = round(float(np.max(np.abs(np.array(stan_means) - exact))), 4)
    except Exception as e:  # no Stan backend here: say so in the JSON
        result["stan_refits_seconds"] = None
        result["stan_error"] = f"{type(e).__name__}: {e}"[:300]
    emit({"benchmark": "sensitivity", **result}, device)


if __name__ == "__main__":
    main()
