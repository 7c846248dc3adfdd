"""Joint posterior + likelihood amortization (JANA) against closed forms: evidence, Bayes factors, surrogate, LOO, JSBC.

Usage: python benchmarks/joint.py [--epochs E --iterations I] [--data-sets 100] [--out DIR]
Prints one JSON object.  Two conjugate Gaussian models (unit and doubled noise SD, known
evidence, likelihood and leave-one-out predictive) are each trained as a JointAmortizer with the
package's default networks; on held-out data sets of each model it reports: training time;
the median absolute error of the log marginal likelihood (bar 0.1 nats) and its Pareto k;
the share of data sets whose estimated log Bayes factor has the sign of the exact one (bar
95 %); the mean absolute error of the surrogate's log density per observation; a C2ST
between surrogate and simulator rows at the true parameters; PSIS-LOO ELPD against exact LOO
(share within 1 SE); joint SBC; and the seconds per data set of the evidence and of the ELPD.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch

from _common import emit, parser, setup, train_or_load, training_arguments


def main() -> None:
    p = parser(__doc__)
    training_arguments(p, epochs=20, iterations=200, lr=5e-4)
    p.add_argument("--data-sets", type=int, default=100)
    p.add_argument("--loo-data-sets", type=int, default=20)
    p.add_argument("--draws", type=int, default=4000)
    p.add_argument("--out", default="benchmark-joint")
    args = p.parse_args()
    device = setup(args)
    from amortbayes import compare_models
    from amortbayes.amortizers import JointAmortizer, joint_sbc
    from amortbayes.diagnostics import c2st
    from amortbayes.models import ConjugateGaussian, simulated_data_sets

    out = Path(args.out)
    models = {"unit": ConjugateGaussian(dim=1, n_obs=(5, 20)),
              "wide": ConjugateGaussian(dim=1, noise_sd=2.0, n_obs=(5, 20))}
    amortizers, result = {}, {"data_sets": args.data_sets, "train_steps": args.epochs * args.iterations}
    for name, model in models.items():
        amortizers[name] = train_or_load(JointAmortizer, model, out / name, args, result, name)

    warnings.simplefilter("ignore")
    for name, model in models.items():
        amortizer = amortizers[name]
        sets = simulated_data_sets(model, args.data_sets, seed=7)
        errors, ks, ses, mae, seconds = [], [], [], [], []
        for theta, x in sets:
            t0 = time.perf_counter()
            est = amortizer.log_marginal_likelihood(x, args.draws, seed=0)
            seconds.append(time.perf_counter() - t0)
            errors.append(est["log_ml"] - model.log_evidence(x))
            ks.append(est["pareto_k"])
            ses.append(est["mc_se"])
            surrogate = amortizer.log_likelihood(x, theta, pointwise=True)[0]
            mae.append(float(np.abs(surrogate - model.log_likelihood_rows(x, theta)[0]).mean()))
        theta = np.array([[0.8]], dtype=np.float32)
        rows = amortizer.simulate(theta, 4000, seed=1)[0]
        real = model.simulate_data(torch.from_numpy(theta), 4000, torch.Generator().manual_seed(2))[0].numpy()
        loo_in, loo_seconds, loo_gap = 0, [], []
        for _, x in sets[: args.loo_data_sets]:
            t0 = time.perf_counter()
            loo = amortizer.elpd_loo(x, args.draws, seed=0)
            loo_seconds.append(time.perf_counter() - t0)
            exact = float(model.loo_log_predictive(x).sum())
            loo_gap.append((loo["elpd"] - exact) / loo["se"])
            loo_in += abs(loo["elpd"] - exact) < loo["se"]
        jsbc = joint_sbc(amortizer, model, n_sims=500, n_draws=100)
        result[name] = {
            "log_ml_median_abs_error": round(float(np.median(np.abs(errors))), 4),
            "log_ml_mean_error": round(float(np.mean(errors)), 4),
            "log_ml_90pct_abs_error": round(float(np.quantile(np.abs(errors), 0.9)), 4),
            "log_ml_mc_se_median": round(float(np.median(ses)), 4),
            "pareto_k_median": round(float(np.median(ks)), 3),
            "pareto_k_share_above_0.7": round(float(np.mean(np.array(ks) > 0.7)), 3),
            "surrogate_log_density_mae_per_observation": round(float(np.mean(mae)), 4),
            "surrogate_vs_simulator_c2st_at_theta_0.8": round(float(c2st(rows, real, seed=0)), 3),
            "elpd_loo_within_1se_share": round(loo_in / len(loo_seconds), 3),
            "elpd_loo_error_in_se_median_abs": round(float(np.median(np.abs(loo_gap))), 3),
            "joint_sbc_passed": bool(jsbc.passed),
            "joint_sbc_max_abs_ecdf_diff": round(float(jsbc.table["max_abs_ecdf_diff"].max()), 4),
            "seconds_per_data_set_evidence": round(float(np.median(seconds)), 3),
            "seconds_per_data_set_elpd_loo": round(float(np.median(loo_seconds)), 3),
        }
    # Bayes factors: data sets of both models, the estimated log BF of unit against wide vs the exact one
    signs, bf_errors, compare_seconds = [], [], []
    half = args.data_sets // 2
    for name in ("unit", "wide"):
        for _, x in simulated_data_sets(models[name], half, seed=11):
            t0 = time.perf_counter()
            table = compare_models(amortizers, x, n=args.draws)
            compare_seconds.append(time.perf_counter() - t0)
            est = table.loc["unit", "log_ml"] - table.loc["wide", "log_ml"]
            exact = models["unit"].log_evidence(x) - models["wide"].log_evidence(x)
            signs.append(np.sign(est) == np.sign(exact))
            bf_errors.append(est - exact)
    result["bayes_factor"] = {
        "data_sets": len(signs), "right_sign_share": round(float(np.mean(signs)), 3),
        "log_bf_median_abs_error": round(float(np.median(np.abs(bf_errors))), 4),
        "compare_models_seconds_median": round(float(np.median(compare_seconds)), 3),
    }
    emit({"benchmark": "joint", **result}, device)


if __name__ == "__main__":
    main()
