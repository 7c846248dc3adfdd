"""Multilevel benchmark: train the hierarchical linear model, fit sleepstudy, compare with Stan, time LOGO and J = 100.

Usage: python benchmarks/multilevel.py [--epochs 40 --iterations 250] [--no-stan] [--out DIR]
Prints one JSON object: training wall time and budget, amortized fit time, LOGO time for all
groups, Stan time for the same data and their ratio, and accuracy against Stan (mean
difference in Stan SDs, SD ratio, interval overlap, pooling factors, C2ST on globals), and
LOGO against 18 Stan refits, one without each subject (LOGO posteriors and exact ELPDs), and
the importance-sampled draws (amortized proposal, exact weights) against Stan.
--reuse takes the amortizer a previous run saved in --out instead of training.
--prior-sims also reports the raw network's error across prior draws in sleepstudy's design,
against importance-sampled posteriors (no Stan needed).
Writes the comparison table, the amortizer and two figures (global pairs, group intervals with
pooling factors) to --out.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from _common import against_reference, emit, median_ms, parser, setup, train_settings, training_arguments
from amortbayes import MultilevelAmortizer, fit, load, save
from amortbayes.amortizers.multilevel import default_settings
from amortbayes.data import load_sleepstudy
from amortbayes.diagnostics import log_mean_exp, pooling_factor
from amortbayes.models import HierarchicalLinear

GLOBAL = ["b_Intercept", "b_x", "sd_Intercept", "sd_x", "cor_Intercept_x", "sigma"]


def main() -> None:
    p = parser(__doc__)
    training_arguments(p, epochs=40, iterations=250, lr=3e-3)
    p.add_argument("--local-flow", default=None, choices=["spline", "affine"], help="local flow kind (default: the model's, affine 2 x 32; spline 4 x 64 is the general default)")
    p.add_argument("--local-layers", type=int, default=None, help="local flow coupling layers (default: the package's)")
    p.add_argument("--local-hidden", type=int, default=None, help="local flow hidden width (default: the package's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the network weights and the training simulations")
    p.add_argument("--no-stan", action="store_true")
    p.add_argument("--simulated", type=int, default=4,
                   help="also compare with Stan on this many data sets simulated from the model at Stan's "
                        "posterior means, in sleepstudy's design (approximation error without model misfit)")
    p.add_argument("--same-statistics", type=int, default=4,
                   help="also sample for this many data sets with sleepstudy's exact sufficient statistics "
                        "(whose posterior is Stan's for sleepstudy) and report how far the amortized means move")
    p.add_argument("--prior-sims", type=int, default=50,
                   help="raw amortized vs importance-sampled means on this many data sets drawn from the prior in "
                        "sleepstudy's design: the raw network's error across the prior, without Stan")
    p.add_argument("--no-logo-refits", action="store_true",
                   help="skip the Stan refit without each subject (its LOGO posterior and exact log p(y_k | y_-k))")
    p.add_argument("--out", default="benchmark-multilevel")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (resume=True if it exists)")
    p.add_argument("--reuse", action="store_true",
                   help="load the amortizer and history.csv a previous run saved in --out instead of training "
                        "(train_seconds is then that run's training time)")
    args = p.parse_args()
    device = setup(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = HierarchicalLinear()
    local = default_settings(model).local_flow  # affine: the model's local posterior is Gaussian
    local = dataclasses.replace(local, kind=args.local_flow or local.kind, layers=args.local_layers or local.layers,
                                hidden=args.local_hidden or local.hidden)
    amortizer = MultilevelAmortizer(model, dataclasses.replace(default_settings(model), local_flow=local, seed=args.seed))
    settings = train_settings(args)
    ckpt = Path(args.checkpoint) if args.checkpoint else None
    resume = bool(ckpt and (ckpt / "checkpoint.pt").exists())
    if args.reuse:
        amortizer = load(out / "amortizer", model=model)
        history = pd.read_csv(out / "history.csv")
    else:
        history = fit(amortizer, model, settings=settings, device=args.device, checkpoint_dir=ckpt,
                      resume=resume, progress=False, seed=args.seed)
    train_s = float(history["seconds"].sum())  # the epochs' own times (a resumed run counts all of them)
    amortizer.to("cpu").eval()
    save(amortizer, out / "amortizer")
    history.to_csv(out / "history.csv", index=False)

    df = load_sleepstudy()
    kw = {"group": "Subject", "columns": {"x": "Days", "y": "Reaction"}}
    data = amortizer.prepare(df, **kw)
    fit_ms = median_ms(lambda: amortizer.sample_draws(data, 4000), 5, torch.device("cpu"), warmup=1)
    draws = amortizer.sample_draws(data, 4000, seed=1)
    amortized = draws.to_frame(0)
    logo_ms = median_ms(lambda: amortizer.logo(data, model, n=1000), 3, torch.device("cpu"), warmup=1)
    loo = amortizer.logo(data, model, n=1000, seed=0)
    loo.to_csv(out / "logo.csv", index=False)

    # latency at J = 100 groups of 10 rows, 1,000 draws
    big = model.simulate(1, torch.Generator().manual_seed(5), n_groups=100, n_obs=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        big_data = amortizer.prepare(big)
    j100_ms = median_ms(lambda: amortizer.sample_draws(big_data, 1000), 5, torch.device("cpu"), warmup=1)

    result = {
        "model": "hierarchical_linear (sleepstudy design)",
        "train_seconds": round(train_s, 1),
        "train_simulations": settings.epochs * settings.iterations_per_epoch * settings.batch_size,
        "train_steps": settings.epochs * settings.iterations_per_epoch,
        "seed": args.seed,
        "local_flow": dataclasses.asdict(local),
        "final_val_loss": round(float(history["val_loss"].iloc[-1]), 3),
        "amortized_fit_ms_4000_draws": round(fit_ms, 1),
        "logo_all_18_groups_ms": round(logo_ms, 1),
        "j100_1000_draws_ms": round(j100_ms, 1),
    }
    if args.prior_sims:
        result["raw_vs_importance_over_prior"] = _raw_vs_importance(amortizer, model, args.prior_sims)
    if not args.no_stan:
        from amortbayes.plots import plot_group_intervals, plot_posterior_pairs
        from amortbayes.reference import compare_draws, fit_stan, hierarchical_linear_data, label_groups
        from amortbayes.simulation import group_levels

        stan_data = hierarchical_linear_data(df, group="Subject", x="Days", y="Reaction", **_priors(model))
        stan = fit_stan("hierarchical_linear", stan_data, chains=4, warmup=1000, draws=1000, seed=1)
        labels = group_levels(df["Subject"], drop_unused=True)
        ref = label_groups(stan.draws, ("r_Intercept", "r_x"), labels)
        table = compare_draws(amortized, ref)
        table.to_csv(out / "comparison.csv")
        lam_a = {n: pooling_factor(amortized[[f"r_{n}[{lab}]" for lab in labels]].to_numpy(),
                                   amortized[f"sd_{n}"].to_numpy()) for n in ("Intercept", "x")}
        lam_s = {n: pooling_factor(ref[[f"r_{n}[{lab}]" for lab in labels]].to_numpy(),
                                   ref[f"sd_{n}"].to_numpy()) for n in ("Intercept", "x")}
        plot_posterior_pairs(amortized[GLOBAL], reference=ref[GLOBAL], path=out / "sleepstudy_vs_stan.png",
                             labels=("amortized", "Stan"))
        plot_group_intervals(amortized, ref, ["r_Intercept", "r_x"], out / "sleepstudy_groups_vs_stan.png",
                             labels=("amortized", "Stan"),
                             pooling={f"r_{n}": (lam_a[n], lam_s[n]) for n in ("Intercept", "x")})
        result.update({
            "stan_seconds": round(stan.seconds, 1),
            "stan_max_rhat": round(stan.max_rhat, 4),
            "speedup_fit_vs_stan": round(stan.seconds / (fit_ms / 1000), 1),
            "speedup_logo_vs_18_stan_refits": round(18 * stan.seconds / (logo_ms / 1000), 1),
            **against_reference(table, amortized, ref, GLOBAL),
            "pooling_abs_diff_max": round(float(max(np.abs(lam_a[n] - lam_s[n]).max() for n in lam_a)), 3),
        })
        # the amortized posterior as an importance proposal for the exact one (Pareto-smoothed weights)
        is_kw = dict(proposals=8000, importance=4, warn=False)
        is_ms = median_ms(lambda: amortizer.importance_draws(data, model, 4000, **is_kw), 3, torch.device("cpu"), warmup=1)
        is_draws = amortizer.importance_draws(data, model, 4000, seed=1, **is_kw)
        weighted = is_draws.to_frame(0)
        t_is = compare_draws(weighted, ref)
        result["importance_sampled"] = {
            "draws": 4000, **{k: is_kw[k] for k in ("proposals", "importance")},
            "ms": round(is_ms, 1),
            "speedup_vs_stan": round(stan.seconds / (is_ms / 1000), 1),
            "pareto_k": round(is_draws.diagnostics["pareto_k"], 3),
            "ess": round(is_draws.diagnostics["ess"], 1),
            **against_reference(t_is, weighted, ref, GLOBAL),
        }
        t_is.to_csv(out / "comparison_importance_sampled.csv")
        if args.same_statistics:
            result["same_sufficient_statistics"] = _same_statistics(amortizer, df, kw, ref, args.same_statistics)
        if args.simulated:
            result["simulated_sleepstudy_design"] = _simulated(amortizer, model, ref, args.simulated)
        if not args.no_logo_refits:
            refits = _logo_refits(amortizer, model, df, kw, loo, stan.draws)
            refits["speedup_logo_vs_stan_refits"] = round(refits["stan_seconds_total"] / (logo_ms / 1000), 1)
            result["logo_vs_stan_refits"] = refits
    emit(result, device)


def _raw_vs_importance(amortizer, model: HierarchicalLinear, k: int) -> dict:
    """Raw amortized means against importance-sampled ones, in the latter's SDs, over ``k`` prior draws.

    Data sets of 18 subjects on Days 0..9 (sleepstudy's design) with parameters from the
    prior.  Where the Pareto k of the weights is below 0.7 the importance-sampled posterior
    stands in for the exact one (on sleepstudy it matches Stan within 0.031 SD), so the
    differences are the raw network's approximation error across the prior, not at one data set.
    """
    from amortbayes.diagnostics.importance import RELIABLE_PARETO_K

    design = dataclasses.replace(model, balanced_designs=1.0)  # every subject on the same evenly spaced days
    batch = design.simulate(k, torch.Generator().manual_seed(11), n_groups=18, n_obs=10)
    diffs, ratios = [], []
    for i in range(k):
        one = {key: v[i : i + 1] for key, v in batch.items()}
        with warnings.catch_warnings():  # a few prior draws lie outside the 1,024 adaptation simulations' range
            warnings.simplefilter("ignore")
            raw = amortizer.sample_draws(one, 4000, seed=i).global_draws[0]
            weighted = amortizer.importance_draws(one, model, 4000, proposals=8000, importance=4, seed=i, warn=False)
        if weighted.diagnostics["pareto_k"] < RELIABLE_PARETO_K:
            ref = weighted.global_draws[0]
            diffs.append((raw.mean(0) - ref.mean(0)) / ref.std(0))
            ratios.append(raw.std(0) / ref.std(0))
    d, r = np.array(diffs), np.array(ratios)
    if not diffs:  # an undertrained network: no importance-sampled reference to measure it against
        return {"data_sets": k, "pareto_k_below_0.7": 0}

    def per(values):
        return {n: round(float(v), 3) for n, v in zip(GLOBAL, values)}

    return {"data_sets": k, "pareto_k_below_0.7": len(d), "mean_signed_diff_in_sd": per(d.mean(0)),
            "mean_abs_diff_in_sd": per(np.abs(d).mean(0)), "p90_abs_diff_in_sd": per(np.quantile(np.abs(d), 0.9, axis=0)),
            "median_sd_ratio": per(np.median(r, axis=0))}


def _simulated(amortizer, model: HierarchicalLinear, ref, k: int) -> dict:
    """Mean and max |mean difference| in Stan SDs over ``k`` data sets simulated at Stan's posterior means.

    18 groups of Days 0..9 as in sleepstudy, but drawn from the model itself: what remains is
    the amortizer's approximation error, not a misfit of the model to the real data.
    """
    from amortbayes.reference import compare_draws, fit_stan, hierarchical_linear_data

    theta = torch.as_tensor(ref[GLOBAL].mean().to_numpy(copy=True)[None], dtype=torch.float32)
    gen = torch.Generator().manual_seed(11)
    diffs = []
    for rep in range(k):
        local = model.sample_local(theta, 18, gen)
        x = model.simulate_data(theta, local, 10, gen, sizes=torch.full((1, 18), 10))[0]
        frame = pd.DataFrame({"g": np.repeat([f"s{j}" for j in range(18)], 10),
                              "x": x[..., 0].reshape(-1).numpy(), "y": x[..., 1].reshape(-1).numpy()})
        draws = amortizer.sample_draws(amortizer.prepare(frame, group="g"), 4000, seed=rep).to_frame(0)
        stan = fit_stan("hierarchical_linear", hierarchical_linear_data(frame, group="g", x="x", y="y", **_priors(model)),
                        chains=4, warmup=1000, draws=1000, seed=rep)
        diffs.append(compare_draws(draws[GLOBAL], stan.draws[GLOBAL])["mean_diff_in_sd"])
    table = pd.concat(diffs, axis=1)
    return {"data_sets": k, "mean_abs_diff_in_stan_sd": table.mean(axis=1).round(3).to_dict(),
            "max_abs_diff_in_stan_sd": table.max(axis=1).round(3).to_dict()}


def _same_statistics(amortizer, df, kw: dict, ref, k: int) -> dict:
    """How far the amortized means move, in Stan SDs, over ``k`` data sets with sleepstudy's sufficient statistics.

    Every subject has the same design (Days 0..9), so the likelihood depends on the data only
    through the mean and scatter matrix of the subjects' least-squares coefficients and each
    subject's residuals.  Redrawing the coefficients as Gaussian-shaped points with the same mean
    and scatter matrix leaves the exact posterior, Stan's, unchanged; an amortizer that moves
    reads more of the data than the model does, and the spread is its approximation error here.
    A last data set keeps the lines and gives every subject the pooled residual sum of squares
    (sleepstudy's residual SDs range from 9 to 61 ms): same posterior again.
    """
    from amortbayes.reference import compare_draws

    subjects = [sub for _, sub in df.groupby("Subject", observed=True)]
    x = np.c_[np.ones(len(subjects[0])), subjects[0]["Days"].to_numpy()]
    if any(not np.array_equal(sub["Days"].to_numpy(), x[:, 1]) for sub in subjects):
        raise ValueError("the same-statistics check needs every subject on the same days")
    coef = np.array([np.linalg.lstsq(x, sub["Reaction"].to_numpy(), rcond=None)[0] for sub in subjects])
    resid = [sub["Reaction"].to_numpy() - x @ c for sub, c in zip(subjects, coef)]
    centred = coef - coef.mean(0)

    def sqrt_psd(a, power):
        w, v = np.linalg.eigh(a)
        return (v * w**power) @ v.T

    rng = np.random.default_rng(7)
    signed = []
    for rep in range(k):
        z = rng.standard_normal(coef.shape)
        z -= z.mean(0)
        z = z @ sqrt_psd(z.T @ z, -0.5) @ sqrt_psd(centred.T @ centred, 0.5)  # same scatter matrix
        frame = pd.concat([sub.assign(Reaction=x @ (coef.mean(0) + zj) + r) for sub, zj, r in zip(subjects, z, resid)])
        draws = amortizer.sample_draws(amortizer.prepare(frame, **kw), 4000, seed=rep).to_frame(0)
        t = compare_draws(draws[GLOBAL], ref[GLOBAL])
        signed.append(np.sign(t["mean_amortized"] - t["mean_reference"]) * t["mean_diff_in_sd"])
    table = pd.concat(signed, axis=1)
    # one more: the subjects' own lines, each subject's residuals rescaled to the same sum of
    # squares (the pooled one), so only the spread of residual SDs across subjects changes
    rss = np.array([(r**2).sum() for r in resid])
    frame = pd.concat([sub.assign(Reaction=x @ c + r * np.sqrt(rss.mean() / s)) for sub, c, r, s in zip(subjects, coef, resid, rss)])
    draws = amortizer.sample_draws(amortizer.prepare(frame, **kw), 4000, seed=k).to_frame(0)
    t = compare_draws(draws[GLOBAL], ref[GLOBAL])
    equal = np.sign(t["mean_amortized"] - t["mean_reference"]) * t["mean_diff_in_sd"]
    return {"data_sets": k, "signed_mean_diff_in_stan_sd_range": {
        n: [round(float(table.loc[n].min()), 3), round(float(table.loc[n].max()), 3)] for n in GLOBAL},
        "equal_residual_sds_signed_mean_diff_in_stan_sd": equal.round(3).to_dict()}


def _logo_refits(amortizer, model: HierarchicalLinear, df, kw: dict, loo: pd.DataFrame, full_draws) -> dict:
    """Leave-one-subject-out against Stan: one refit per subject without it.

    For each subject ``k`` Stan's posterior of the globals given the other subjects is
    compared with the amortizer's (the same network, subject ``k`` left out), and the exact
    ``log p(y_k | y_-k)`` (the closed-form group marginal averaged over Stan's 10,000 draws)
    with the amortizer's LOGO ELPD ``loo``.  The refits also check :func:`psis_logo` on
    Stan's full-data draws ``full_draws`` (the shortcut the diffusion benchmark relies on),
    with each subject's marginal likelihood exact and as :meth:`group_log_evidence`
    estimates it (local flow as the proposal).
    """
    from amortbayes.diagnostics import psis_logo
    from amortbayes.reference import compare_draws, fit_stan, hierarchical_linear_data

    elpd, mc_se, diffs, seconds = [], [], [], 0.0
    for k, lab in enumerate(loo["group"]):
        rest = df[df["Subject"] != lab].copy()
        rest["Subject"] = rest["Subject"].cat.remove_unused_categories()
        stan = fit_stan("hierarchical_linear", hierarchical_linear_data(rest, group="Subject", x="Days", y="Reaction",
                                                                         **_priors(model)),
                        chains=4, warmup=500, draws=2500, seed=k)
        seconds += stan.seconds
        own = df[df["Subject"] == lab][["Days", "Reaction"]].to_numpy(float)
        theta = torch.tensor(stan.draws[GLOBAL].to_numpy(), dtype=torch.float64)
        lp = model.group_log_marginal(theta, torch.as_tensor(own), torch.ones(len(own)))
        estimate, se = log_mean_exp(lp)
        elpd.append(float(estimate))
        mc_se.append(float(se))
        draws = amortizer.sample_draws(amortizer.prepare(rest, **kw), 4000, seed=k).to_frame(0)
        diffs.append(compare_draws(draws[GLOBAL], stan.draws[GLOBAL])["mean_diff_in_sd"])
    gap = np.abs(loo["elpd"].to_numpy() - np.array(elpd))
    table = pd.concat(diffs, axis=1)
    theta = torch.tensor(full_draws[GLOBAL].to_numpy(), dtype=torch.float64)
    exact_px = np.stack([model.group_log_marginal(theta, torch.as_tensor(own), torch.ones(len(own))).numpy()
                         for own in (df[df["Subject"] == lab][["Days", "Reaction"]].to_numpy(float)
                                     for lab in loo["group"])], axis=-1)
    psis = {"exact_group_marginal": psis_logo(exact_px),
            "local_flow_group_marginal": psis_logo(amortizer.group_log_evidence(
                amortizer.prepare(df, **kw), model, full_draws, importance=32, seed=0))}
    return {
        "refits": len(elpd),
        "stan_seconds_total": round(seconds, 1),
        "elpd_abs_diff_max": round(float(gap.max()), 3),
        "elpd_abs_diff_mean": round(float(gap.mean()), 3),
        "elpd_sum": {"amortized": round(float(loo["elpd"].sum()), 2), "stan": round(float(np.sum(elpd)), 2)},
        "mc_se_max": {"amortized": round(float(loo["mc_se"].max()), 3), "stan": round(float(max(mc_se)), 3)},
        "loo_global_mean_diff_in_stan_sd_median": table.median(axis=1).round(3).to_dict(),
        "loo_global_mean_diff_in_stan_sd_max": table.max(axis=1).round(3).to_dict(),
        "psis_on_full_stan_fit_vs_refits": {
            name: {"elpd_abs_diff_max": round(float(np.abs(r["elpd"].to_numpy() - np.array(elpd)).max()), 3),
                   "elpd_sum": round(float(r["elpd"].sum()), 2), "pareto_k_max": round(float(r["khat"].max()), 3)}
            for name, r in psis.items()
        },
    }


def _priors(model: HierarchicalLinear) -> dict[str, float]:
    return model.stan_data()


if __name__ == "__main__":
    main()
