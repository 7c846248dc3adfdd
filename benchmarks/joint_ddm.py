"""Joint amortization of the full diffusion model (no closed-form likelihood) and of the simple one, on speed_acc.

Usage: python benchmarks/joint_ddm.py [--epochs E --iterations I] [--participants 17] [--out DIR] [--models full]
Prints one JSON object.  Trains a JointAmortizer of ``FullDDM()`` (drift, start and
non-decision-time variability) and of ``FullDDM(variability=False)`` (the 4-parameter Wiener
model, exact density), each with the default networks, then reports:

* the surrogate log density per trial against the numerical reference (R's rtdists
  ``ddiffusion`` for the full model, the exact Wiener series for the simple one) on data
  sets simulated at prior draws, per parameter region (|v| below or above 1, a below or above
  1.5);
* posterior SBC (simulator data) and joint SBC (surrogate data) of both amortizers;
* on speed_acc (accuracy condition, block 4; each participant's 96 trials, responses over 3 s
  dropped as rtdists flags them), per participant: the log marginal likelihood of each model
  with the surrogate and, as a reference, with the same importance sampler and the numerical
  likelihood, the log Bayes factor full vs simple, and the PSIS-LOO ELPD difference with its SE.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch

from _common import emit, parser, setup, train_or_load, training_arguments


def reference_log_lik(model, x: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """``(S, N)`` log density of each trial at each draw: exact for the simple model, rtdists for the full one."""
    if not model.variability:
        return model.log_likelihood_rows(x, draws)
    from amortbayes.reference.rtdists import ddiffusion_log

    return np.stack([ddiffusion_log(x[:, 0], d, model) for d in draws])


def reference_log_ml(amortizer, model, x: np.ndarray, n: int, seed: int) -> float:
    """Importance-sampled log marginal likelihood with the posterior network as proposal and the numerical likelihood.

    None when no draw has any likelihood (every draw's non-decision time above the fastest
    response: the posterior network, trained with a surrogate that knows no hard bound, missed it).
    """
    from amortbayes.amortizers.joint import _importance_estimate

    draws = amortizer.posterior.sample_array(x, n, seed=seed)
    log_q = amortizer.posterior.log_prob(draws, x).astype(np.float64)
    log_p = model.log_prior(torch.from_numpy(draws.astype(np.float64))).numpy()
    log_w = reference_log_lik(model, x, draws).sum(-1) + log_p - log_q
    if not np.isfinite(log_w).any():
        return None
    return round(_importance_estimate(log_w)["log_ml"], 3)


def main() -> None:
    p = parser(__doc__)
    training_arguments(p, epochs=30, iterations=200, lr=5e-4)
    p.add_argument("--regions-sets", type=int, default=40, help="simulated data sets for the surrogate check")
    p.add_argument("--participants", type=int, default=17)
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--reference-draws", type=int, default=300, help="draws of the rtdists evidence reference")
    p.add_argument("--sbc-sims", type=int, default=200)
    p.add_argument("--out", default="benchmark-joint-ddm")
    p.add_argument("--models", default="full,simple",
                   help="train (or load) only these, and stop: to train the two in parallel processes")
    args = p.parse_args()
    device = setup(args)
    from amortbayes import compare_models
    from amortbayes.amortizers import JointAmortizer, joint_sbc
    from amortbayes.data import load_speed_acc
    from amortbayes.diagnostics import sbc_check
    from amortbayes.models import FullDDM
    from amortbayes.models.full_ddm import signed_rt

    out = Path(args.out)
    models = {"full": FullDDM(), "simple": FullDDM(variability=False)}
    amortizers, result = {}, {"train_steps": args.epochs * args.iterations}
    chosen = [m.strip() for m in args.models.split(",")]
    for name in chosen:
        amortizers[name] = train_or_load(JointAmortizer, models[name], out / name, args, result, name)
    result["row_encoding"] = {name: a.settings.row_encoding for name, a in amortizers.items()}
    if set(chosen) != set(models):
        emit({"benchmark": "joint_ddm", **result}, device)
        return
    warnings.simplefilter("ignore")

    for name, model in models.items():
        amortizer = amortizers[name]
        gen = torch.Generator().manual_seed(5)
        theta = model.sample_prior(args.regions_sets, gen)
        x = model.simulate_data(theta, 100, gen).numpy()
        regions: dict[str, list[float]] = {}
        for k in range(args.regions_sets):
            surrogate = amortizer.log_likelihood(x[k], theta[k : k + 1].numpy(), pointwise=True)[0]
            reference = reference_log_lik(model, x[k], theta[k : k + 1].numpy())[0]
            ok = np.isfinite(reference)
            region = f"|v|{'<' if abs(float(theta[k, 0])) < 1 else '>='}1, a{'<' if float(theta[k, 1]) < 1.5 else '>='}1.5"
            regions.setdefault(region, []).append(float(np.abs(surrogate[ok] - reference[ok]).mean()))
        batch = model.simulate(args.sbc_sims, torch.Generator().manual_seed(6))
        draws = amortizer.posterior.sample_array({"x": batch["x"].numpy(), "mask": batch["mask"].numpy()}, 100, seed=0)
        sbc = sbc_check(draws, batch["theta_global"].numpy(), list(model.parameter_names))
        jsbc = joint_sbc(amortizer, model, n_sims=args.sbc_sims, n_draws=100)
        result[name] = {
            "surrogate_log_density_mae_per_trial_by_region": {
                r: {"data_sets": len(v), "mean": round(float(np.mean(v)), 4), "max": round(float(np.max(v)), 4)}
                for r, v in sorted(regions.items())},
            "sbc_passed": bool(sbc["passed"].all()), "sbc_failed_parameters": sbc.loc[~sbc["passed"], "parameter"].tolist(),
            "joint_sbc_passed": bool(jsbc.passed),
            "joint_sbc_failed_parameters": jsbc.table.loc[~jsbc.table["passed"], "parameter"].tolist(),
        }

    data = load_speed_acc(drop_censored=True)
    per = []
    for pid in list(data["id"].cat.categories)[: args.participants]:
        d = data[data["id"] == pid]
        x = np.asarray(signed_rt(d["rt"].to_numpy(), d["response_upper"].to_numpy()), dtype=np.float32)[:, None]
        t0 = time.perf_counter()
        table = compare_models(amortizers, x, n=args.draws)
        seconds = time.perf_counter() - t0
        row = {"participant": str(pid), "trials": len(x), "compare_seconds": round(seconds, 2),
               "log_bf_full_vs_simple": round(float(table.loc["full", "log_ml"] - table.loc["simple", "log_ml"]), 3),
               "elpd_full_minus_simple": round(float(table.loc["full", "elpd_loo"] - table.loc["simple", "elpd_loo"]), 3),
               "se_diff": round(float(table["se_diff"].max()), 3),
               "max_khat": round(float(table["max_khat"].max()), 3)}
        for name, model in models.items():
            row[f"log_ml_{name}"] = round(float(table.loc[name, "log_ml"]), 3)
            row[f"log_ml_{name}_numerical_likelihood"] = reference_log_ml(amortizers[name], model, x,
                                                                          args.reference_draws, seed=1)
            distance, threshold = amortizers[name].summary_distance(x)
            row[f"summary_mmd_flagged_{name}"] = bool(distance[0] > threshold)
        per.append(row)
    result["speed_acc"] = {
        "participants": per,
        "log_bf_full_vs_simple_total": round(sum(r["log_bf_full_vs_simple"] for r in per), 2),
        "elpd_full_minus_simple_total": round(sum(r["elpd_full_minus_simple"] for r in per), 2),
        "surrogate_vs_numerical_log_ml_median_abs_diff": {
            name: round(float(np.median([abs(r[f"log_ml_{name}"] - r[f"log_ml_{name}_numerical_likelihood"])
                                         for r in per if r[f"log_ml_{name}_numerical_likelihood"] is not None])), 3)
            for name in models},
        "participants_without_numerical_evidence": {
            name: [r["participant"] for r in per if r[f"log_ml_{name}_numerical_likelihood"] is None] for name in models},
    }
    emit({"benchmark": "joint_ddm", **result}, device)


if __name__ == "__main__":
    main()
