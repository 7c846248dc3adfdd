"""Formula benchmark: amortize() per family on real data (and data simulated from its own model) against Stan.

Usage: python benchmarks/formula.py [--cases gaussian_sleepstudy,...] [--budget N] [--simulated] [--out DIR]
Prints one JSON object with, per case: the formula and family, training budget (steps of 32)
and wall time, fit time (importance-corrected draws of the data), update(newdata=) and LOGO
time, Stan's time for the same data (make_stancode's program, pystan), and accuracy against
Stan: per parameter the mean difference in Stan posterior SDs and the SD ratio, the largest of
them for fixed effects and family parameters and for group SDs and correlations, Pareto k and
ESS of the importance weights; and the same for the raw amortized draws.
--simulated adds, per case, a data set simulated from the fitted model (its parameters at the
corrected posterior means, the data's own design), fitted by update() without training.
Writes the comparison tables and figures to --out.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from _common import emit, parser, rounded_diagnostics, setup
from amortbayes import data as datasets
from amortbayes.formula import amortize
from amortbayes.formula.fit import DEFAULT_STEPS


def _cbpp_bernoulli() -> pd.DataFrame:
    """cbpp with one row per animal (incidence of size): a real bernoulli data set of 842 rows in 15 herds."""
    d = datasets.load_cbpp()
    animals = d.loc[d.index.repeat(d["size"]), ["herd", "period"]].reset_index(drop=True)
    rank = d["size"].apply(np.arange).explode().to_numpy(dtype=int)  # each animal's place in its herd-period
    animals["case"] = (rank < np.repeat(d["incidence"].to_numpy(), d["size"].to_numpy())).astype(int)
    return animals


def _synthetic(groups: int = 500, sizes: tuple[int, int] = (2, 38), seed: int = 2026) -> pd.DataFrame:
    """A gaussian design of ``groups`` groups of 2-38 rows (about 10,000 rows for 500), simulated once with a fixed seed.

    y = 1 + 0.5 x + u_j + v_j x + e with SD(u) = 0.8, SD(v) = 0.3, cor(u, v) = 0.3, SD(e) = 1.
    """
    rng = np.random.default_rng(seed)
    n = rng.integers(sizes[0], sizes[1] + 1, groups)
    g = np.repeat(np.arange(groups), n)
    x = rng.normal(size=len(g))
    cov = np.array([[0.64, 0.3 * 0.8 * 0.3], [0.3 * 0.8 * 0.3, 0.09]])
    u = rng.multivariate_normal([0.0, 0.0], cov, groups)
    y = 1.0 + 0.5 * x + u[g, 0] + u[g, 1] * x + rng.normal(size=len(g))
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical([f"g{j:03d}" for j in g])})


CASES = {
    "gaussian_sleepstudy": ("Reaction ~ Days + (Days | Subject)", "gaussian", datasets.load_sleepstudy),
    "lognormal_sleepstudy": ("Reaction ~ Days + (Days | Subject)", "lognormal", datasets.load_sleepstudy),
    "student_sleepstudy": ("Reaction ~ Days + (Days | Subject)", "student", datasets.load_sleepstudy),
    "gaussian_radon": ("log_radon ~ floor + (1 | county)", "gaussian", datasets.load_radon),
    "binomial_cbpp": ("incidence | trials(size) ~ period + (1 | herd)", "binomial", lambda: datasets.load_cbpp()),
    "bernoulli_cbpp": ("case ~ period + (1 | herd)", "bernoulli", _cbpp_bernoulli),
    "poisson_epilepsy": ("count ~ zAge + zBase * Trt + (1 | patient)", "poisson", lambda: datasets.load_epilepsy()),
    "negbinomial_epilepsy": ("count ~ zAge + zBase * Trt + (1 | patient)", "negbinomial",
                             lambda: datasets.load_epilepsy()),
    # designs of thousands of rows (benchmarks/data_scale.py)
    "gaussian_exam": ("normexam ~ standLRT + (standLRT | school)", "gaussian", datasets.load_exam),
    "gaussian_synthetic10k": ("y ~ x + (x | g)", "gaussian", _synthetic),
    "bernoulli_contraception": ("use ~ age + urban + (urban | district)", "bernoulli", datasets.load_contraception),
}


def accuracy(table: pd.DataFrame, model) -> dict:
    """The bars' view of a ``compare_draws`` table: worst mean difference per class, SD ratio range."""
    names = list(model.parameter_names)
    first = [n for n in names if n.startswith("b_")] + list(model.family.dpars)
    group = [n for n in names if n.startswith(("sd_", "cor_"))]
    t = table.loc[names]
    locals_ = table.loc[[c for c in table.index if c.startswith("r_")]]
    return {
        "max_diff_fixed_and_family_sd": round(float(t.loc[first, "mean_diff_in_sd"].max()), 3),
        "max_diff_group_sd_cor_sd": round(float(t.loc[group, "mean_diff_in_sd"].max()), 3) if group else None,
        "sd_ratio_range": [round(float(t["sd_ratio"].min()), 3), round(float(t["sd_ratio"].max()), 3)],
        "max_diff_local_sd": round(float(locals_["mean_diff_in_sd"].max()), 3) if len(locals_) else None,
        "per_parameter": {n: {"mean_diff_in_sd": round(float(t.loc[n, "mean_diff_in_sd"]), 3),
                              "sd_ratio": round(float(t.loc[n, "sd_ratio"]), 3)} for n in names},
    }


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run_case(name: str, args, out: Path) -> dict:
    from amortbayes.formula.checks import stan_draws
    from amortbayes.formula.fit import _draw
    from amortbayes.reference import compare_draws

    formula, family, load = CASES[name]
    df = load()
    fitted, train_s = timed(lambda: amortize(formula, df, family, budget=args.budget, progress=False, seed=args.seed,
                                             file=out / f"{name}_fit"))
    model = fitted.model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, update_s = timed(lambda: fitted.update(df))
        raw, raw_s = timed(lambda: _draw(model, fitted.amortizer, df, "amortized", 4000, 0, None))
    _, logo_s = timed(lambda: fitted.logo())
    stan, reference = stan_draws(model, chains=args.stan_chains, warmup=args.stan_warmup, draws=args.stan_draws,
                                 file=out / f"{name}_stan.npz")
    names = list(model.parameter_names) + [c for c in reference.columns if c.startswith("r_")]
    table = compare_draws(fitted.draws(), reference, names)
    table.to_csv(out / f"{name}_vs_stan.csv")
    raw_table = compare_draws(raw.draws(), reference, names)
    from amortbayes.formula.checks import _plot_comparison

    _plot_comparison(fitted.draws(), reference, list(model.parameter_names), out / f"{name}_vs_stan.png")
    result = {
        "formula": formula, "family": family, "rows": len(fitted.terms.y), "groups": len(fitted.terms.levels),
        "budget_steps": args.budget or DEFAULT_STEPS, "epochs_run": None if fitted.history is None else len(fitted.history),
        "training_loop_seconds": None if fitted.history is None else round(float(fitted.history["seconds"].sum()), 1),
        "seconds_per_step": None if fitted.history is None else round(
            float(fitted.history["seconds"].sum()) / (args.budget or DEFAULT_STEPS), 4),
        "group_data": model.group_data,
        "amortize_seconds": round(train_s, 1), "update_seconds": round(update_s, 3), "logo_seconds": round(logo_s, 3),
        "raw_fit_seconds": round(raw_s, 3),
        "stan_seconds": round(stan.seconds, 1), "stan_compile_seconds": round(stan.compile_seconds or 0.0, 1),
        "stan_max_rhat": round(stan.max_rhat, 4), "stan_divergences": stan.divergences,
        "importance": {**accuracy(table, model), **rounded_diagnostics(
            {k: v for k, v in (fitted.posterior.diagnostics or {}).items() if k in ("pareto_k", "ess", "rounds")})},
        "amortized": accuracy(raw_table, model),
    }
    if args.simulated:
        result["simulated"] = simulated_case(fitted, args, out / f"{name}_simulated_stan.npz")
    return result


def simulated_case(fitted, args, stan_file: Path) -> dict:
    """A data set from the model at the corrected posterior means in the data's own design, fitted by update()."""
    from amortbayes.formula.checks import stan_draws
    from amortbayes.reference import compare_draws

    model, t = fitted.model, fitted.terms
    theta = torch.as_tensor(fitted.posterior.global_draws[0].mean(0), dtype=torch.float64)[None]
    gen = torch.Generator().manual_seed(11)
    r = model.sample_local(theta, len(t.levels), gen)[0]
    rows = torch.as_tensor(np.column_stack([t.X, t.Z]), dtype=torch.float64)
    eta = rows[:, : model.P] @ theta[0, : model.P] + (rows[:, model.P:] * r[t.group_index]).sum(-1)
    start = model.P + model.K + len(model.cor_pairs)
    dpars = {d: theta[0, start + i] for i, d in enumerate(model.family.dpars)}
    trials = None if t.trials is None else torch.as_tensor(t.trials, dtype=torch.float64)
    y = model.family.simulate(eta, dpars, gen, trials).numpy()
    new = model.terms_data(fitted.data).copy()
    new[t.response] = y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim, update_s = timed(lambda: fitted.update(new))
    stan, reference = stan_draws(model, chains=args.stan_chains, warmup=args.stan_warmup, draws=args.stan_draws,
                                 file=stan_file, terms=sim.data_terms)
    names = list(model.parameter_names) + [c for c in reference.columns if c.startswith("r_")]
    table = compare_draws(sim.draws(), reference, names)
    return {"update_seconds": round(update_s, 3), "stan_seconds": round(stan.seconds, 1),
            "importance": {**accuracy(table, model), **rounded_diagnostics(
                {k: v for k, v in (sim.posterior.diagnostics or {}).items() if k in ("pareto_k", "ess")})}}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    p.add_argument("--budget", type=int, default=None, help="training steps of 32 (default: amortize's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--simulated", action="store_true")
    p.add_argument("--stan-chains", type=int, default=4)
    p.add_argument("--stan-warmup", type=int, default=1000)
    p.add_argument("--stan-draws", type=int, default=1000)
    p.add_argument("--out", default="benchmark-formula")
    args = p.parse_args()
    device = setup(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {list(CASES)}")
    results = {}
    for name in cases:
        results[name] = run_case(name, args, out)
        (out / "partial.json").write_text(pd.Series(results).to_json())
    emit({"benchmark": "formula", "cases": results}, device)


if __name__ == "__main__":
    main()
