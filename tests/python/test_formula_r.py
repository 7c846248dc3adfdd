"""The formula layer against R: design matrices as ``model.matrix()``, ``lme4::lFormula()`` and brms build them.

Every term type :func:`~amortbayes.formula.parse_terms` supports is built here by R from the
same data frame: the fixed part by ``model.matrix()`` (values and column order, R's names
mapped to brms'), the group part by ``lme4::lFormula()``'s ``reTrms`` (``Zt`` summed over the
levels per coefficient gives Z's columns, ``flist`` the grouping, ``cnms`` the coefficient
names and the correlated blocks, one per term); ``brms::make_standata()`` checks brms' names
and its reading of ``||`` (where lme4 and brms differ, for a factor in a ``||`` term).  The
slow test fits sleepstudy with ``brms::brm()`` under the package's priors and with the Stan
program the package generates.

Needs rpy2 (``pip install -e .[r]``) and R with lme4 (and brms, rstan for the slow test):
``scripts/setup-r.sh`` installs them on Debian; without them these tests skip.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulae")
pytest.importorskip("rpy2")


def _r_loads() -> str | None:
    """Why R with lme4 cannot be embedded here, or None; asked in a subprocess, since R exits its process on a
    fatal start-up error (a broken R_HOME) rather than raising."""
    probe = "import rpy2.robjects; from rpy2.robjects.packages import importr; importr('lme4')"
    try:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return "loading R and lme4 took over 300 s"
    lines = (out.stderr or out.stdout).strip().splitlines()
    return None if out.returncode == 0 else (lines[-1] if lines else f"exit status {out.returncode}")


if (_reason := _r_loads()) is not None:
    pytest.skip(f"R with lme4 cannot be loaded through rpy2 ({_reason}); scripts/setup-r.sh installs them",
                allow_module_level=True)

try:
    import rpy2.robjects as ro
    from rpy2.robjects import numpy2ri, pandas2ri
    from rpy2.robjects.packages import importr

    importr("lme4")
except Exception as error:  # noqa: BLE001 - no R, R without lme4, or an rpy2 that does not load this R
    pytest.skip(f"R with lme4 cannot be loaded through rpy2 ({type(error).__name__}: {error}); "
                "scripts/setup-r.sh installs them", allow_module_level=True)

from amortbayes.formula import parse_terms  # noqa: E402

_CONVERT = ro.default_converter + numpy2ri.converter + pandas2ri.converter

# R helpers: plain vectors and matrices only, so that the conversion back is unambiguous
ro.r("""
ab_fixed <- function(formula, d) {
    mm <- model.matrix(lme4::nobars(as.formula(formula)), d)
    list(X = unname(mm), names = colnames(mm))
}
ab_random <- function(formula, d, family = NULL) {
    f <- as.formula(formula)
    lf <- if (is.null(family)) lme4::lFormula(f, d) else lme4::glFormula(f, d, family = family)
    rt <- lf$reTrms
    stopifnot(length(rt$flist) == 1)
    list(X = unname(lf$X), names = colnames(lf$X), Zt = unname(as.matrix(rt$Zt)), Gp = as.integer(rt$Gp),
         cnms = unlist(rt$cnms, use.names = FALSE), cnms_term = rep(seq_along(rt$cnms), lengths(rt$cnms)),
         terms = names(rt$cnms), group = names(rt$flist),
         index = as.integer(rt$flist[[1]]), levels = levels(rt$flist[[1]]),
         response = unname(as.matrix(model.response(lf$fr))))
}
""")


def _r_call(function: str, *args, **kwargs) -> dict:
    """An R helper's list as a dict of numpy arrays / lists (data frames go over with pandas' conversion)."""
    with _CONVERT.context():
        out = ro.r[function](*args, **kwargs)
        return {str(k): v for k, v in out.items()}


def _strings(v) -> list[str]:
    return [str(s) for s in np.atleast_1d(v)]


def brms_name(r_name: str) -> str:
    """R's ``model.matrix`` column name -> brms': ``(Intercept)`` -> ``Intercept``, ``I(x^2)`` -> ``IxE2``.

    ``log(x)`` -> ``logx``, ``scale(x)`` -> ``scalex``; other names (``x``, ``fb``, ``x:fb``) are the same.
    """
    if r_name == "(Intercept)":
        return "Intercept"
    return ":".join(re.sub(r"[()\s]", "", p.replace("^", "E")) if re.match(r"^(I|log|scale)\(", p) else p
                    for p in r_name.split(":"))


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    """60 rows, 6 groups of unequal size in shuffled order, x > 0, z, a character factor f (a/b/c)."""
    rng = np.random.default_rng(20)
    sizes = [4, 6, 8, 10, 14, 18]
    g = np.repeat(["s3", "s1", "s6", "s2", "s5", "s4"], sizes)
    f = np.array(list("abc") * 20)
    order = rng.permutation(60)
    x = rng.uniform(0.5, 4.0, 60)
    z = rng.normal(0.0, 1.0, 60)
    y = 1.0 + 0.5 * x - z + rng.normal(0.0, 0.3, 60)
    return pd.DataFrame({"y": y, "x": x, "z": z, "f": f[rng.permutation(60)], "g": g[order]})


def test_the_data_go_to_r_as_they_are(df):
    with _CONVERT.context():
        ro.globalenv["ab_df"] = df
    assert list(ro.r("sapply(ab_df, class)")) == ["numeric", "numeric", "numeric", "character", "character"]
    np.testing.assert_array_equal(np.asarray(ro.r("ab_df$x")), df.x)
    assert list(ro.r("levels(factor(ab_df$g))")) == ["s1", "s2", "s3", "s4", "s5", "s6"]


FIXED = [
    "y ~ 1",
    "y ~ x",
    "y ~ 0 + x + z",
    "y ~ x + z - 1",
    "y ~ f",
    "y ~ 0 + f",
    "y ~ f - 1",
    "y ~ x + f",
    "y ~ x:f",
    "y ~ x*z",
    "y ~ x * f",
    "y ~ log(x)",
    "y ~ scale(x)",
    "y ~ I(x^2)",
    "y ~ 0 + x + log(x) + scale(z) + I(x^2) + f",
]


@pytest.mark.parametrize("formula", FIXED)
def test_population_design_is_model_matrix(df, formula):
    r = _r_call("ab_fixed", formula, df)
    t = parse_terms(formula, df)
    assert t.fixed_names == tuple(brms_name(n) for n in _strings(r["names"]))
    np.testing.assert_allclose(t.X, np.asarray(r["X"]).reshape(len(df), -1), rtol=0, atol=1e-10)
    assert t.group is None and t.Z.shape == (len(df), 0)


GROUPED = [
    "y ~ x + (1 | g)",
    "y ~ x + (1 + x | g)",
    "y ~ x + (x | g)",
    "y ~ x + (x || g)",
    "y ~ x + (1 | g) + (0 + x | g)",
    "y ~ x + (1 + f | g)",
    "y ~ 1 + (0 + f | g)",
    "y ~ x * f + (1 + z | g) + (0 + x | g)",
    "y ~ x + (1 | g) + (0 + f | g)",  # each term its own model matrix: fa fb fc in the second
    "y ~ x + (1 + x:f | g)",
    "y ~ x + (1 + x * z | g)",
    "y ~ x + (x - 1 | g)",
    "y ~ x + (f - 1 | g)",
    "y ~ x + (1 + log(x) | g)",
    "y ~ x + (1 + I(x^2) | g)",
    "y ~ scale(x) + (1 + scale(x) | g)",
    "y ~ x + (scale(x) || g)",
    "y ~ x + (1 + x | g) + (0 + z || g)",
]
# lme4 and brms differ on a factor in a || term: lme4 splits (f || g) into (1 | g) + (0 + f | g)
# (fa fb fc, correlated), brms keeps model.matrix(~ f) (Intercept fb fc) with no correlations;
# the package follows brms, checked against brms::make_standata below
BRMS_ONLY = ["y ~ x + (f || g)", "y ~ x + (1 + f || g)"]


def _lme4_design(r: dict, n: int) -> tuple[np.ndarray, list[str], list[tuple[int, ...]]]:
    """Z (levels summed out per coefficient), coefficient names and one block per term from lFormula's reTrms."""
    Zt = np.asarray(r["Zt"]).reshape(-1, n)
    Gp = np.asarray(r["Gp"]).astype(int)
    cols, names, blocks = [], [], []
    cnms, term = _strings(r["cnms"]), np.asarray(r["cnms_term"]).astype(int)
    for k in range(len(Gp) - 1):
        cnm = [c for c, i in zip(cnms, term) if i == k + 1]
        rows = Zt[Gp[k]:Gp[k + 1]].reshape(-1, len(cnm), n)  # lme4: levels outer, coefficients inner
        blocks.append(tuple(range(len(names), len(names) + len(cnm))))
        names += [brms_name(c) for c in cnm]
        cols += list(rows.sum(axis=0))
    return np.stack(cols, axis=1), names, blocks


@pytest.mark.parametrize("formula", GROUPED)
def test_group_design_is_lme4s(df, formula):
    r = _r_call("ab_random", formula, df)
    t = parse_terms(formula, df)
    n = len(df)
    # the fixed part, as lme4 builds it
    assert t.fixed_names == tuple(brms_name(c) for c in _strings(r["names"]))
    np.testing.assert_allclose(t.X, np.asarray(r["X"]).reshape(n, -1), rtol=0, atol=1e-10)
    # grouping: the factor, its levels in R's order, each row's level
    assert t.group == _strings(r["group"])[0] and set(_strings(r["terms"])) == {t.group}
    assert t.levels == tuple(_strings(r["levels"]))
    np.testing.assert_array_equal(t.group_index, np.asarray(r["index"]) - 1)
    # Z, the coefficient names, and one correlated block per term (|| splits into one term per coefficient)
    Z, names, blocks = _lme4_design(r, n)
    assert t.group_names == tuple(names)
    assert t.blocks == tuple(blocks)
    np.testing.assert_allclose(t.Z, Z, rtol=0, atol=1e-10)


def test_rows_with_missing_values_are_dropped_as_lme4_drops_them(df):
    d = df.copy()
    d.loc[[3, 17, 40], "x"] = np.nan
    d.loc[[5], "z"] = np.nan
    formula = "y ~ x + f + (1 + z | g)"
    r = _r_call("ab_random", formula, d)
    with pytest.warns(UserWarning, match="4 of 60"):
        t = parse_terms(formula, d)
    np.testing.assert_allclose(t.X, np.asarray(r["X"]).reshape(56, -1), rtol=0, atol=1e-10)
    np.testing.assert_allclose(t.Z, _lme4_design(r, 56)[0], rtol=0, atol=1e-10)
    np.testing.assert_array_equal(t.group_index, np.asarray(r["index"]) - 1)
    np.testing.assert_allclose(t.y, np.asarray(r["response"]).ravel())


def test_binomial_responses_are_glmers(df):
    rng = np.random.default_rng(3)
    n = rng.integers(1, 12, len(df))
    s = rng.binomial(n, 0.4)
    d = df.assign(s=s, n=n, fail=n - s)
    binomial = ro.r("binomial()")
    for ours, glmer in [("s | trials(n) ~ x + (1 | g)", "cbind(s, n - s) ~ x + (1 | g)"),
                        ("cbind(s, fail) ~ x + (1 | g)", "cbind(s, fail) ~ x + (1 | g)")]:
        r = _r_call("ab_random", glmer, d, family=binomial)
        t = parse_terms(ours, d)
        response = np.asarray(r["response"]).reshape(len(d), 2)  # model.response: successes, failures
        np.testing.assert_array_equal(t.y, response[:, 0])
        np.testing.assert_array_equal(t.trials, response.sum(axis=1))
        np.testing.assert_allclose(t.X, np.asarray(r["X"]).reshape(len(d), -1), rtol=0, atol=1e-10)
        np.testing.assert_allclose(t.Z, _lme4_design(r, len(d))[0], rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------------------- brms

def _brms():
    try:
        importr("brms")
    except Exception as error:  # noqa: BLE001
        pytest.skip(f"R package brms cannot be loaded ({error}); scripts/setup-r.sh installs it")


ro.r("""
ab_brms <- function(formula, d) {
    f <- as.formula(formula)
    sd <- brms::make_standata(f, d)
    # brms' own table of group-level coefficients (internal, brms 2.18): id = term, cn = column
    re <- brms:::tidy_ranef(brms::brmsterms(f), d)
    Z <- if (nrow(re)) sapply(seq_len(nrow(re)), function(i) sd[[paste0("Z_", re$id[i], "_", re$cn[i])]]) else NULL
    list(X = unname(sd$X), names = colnames(sd$X), Z = Z, coef = as.character(re$coef), id = as.integer(re$id),
         cor = as.logical(re$cor), J = if (nrow(re)) as.integer(sd$J_1) else integer(0))
}
""")


@pytest.mark.parametrize("formula", FIXED + GROUPED + BRMS_ONLY)
def test_design_and_names_are_brms_standata(df, formula):
    """brms::make_standata(): X with brms' column names, and the Z_<term>_<k> columns, names and correlations."""
    _brms()
    r = _r_call("ab_brms", formula, df)
    t = parse_terms(formula, df)
    n = len(df)
    assert t.fixed_names == tuple(_strings(r["names"]))
    np.testing.assert_allclose(t.X, np.asarray(r["X"]).reshape(n, -1), rtol=0, atol=1e-10)
    coef = _strings(r["coef"]) if len(np.atleast_1d(r["coef"])) else []
    assert t.group_names == tuple(coef)
    if coef:
        np.testing.assert_allclose(t.Z, np.asarray(r["Z"]).reshape(n, -1), rtol=0, atol=1e-10)
        np.testing.assert_array_equal(t.group_index, np.asarray(r["J"]) - 1)
        ids, cor = np.asarray(r["id"]).astype(int), np.asarray(r["cor"]).astype(bool)
        blocks = []
        for i in dict.fromkeys(ids):
            members = tuple(int(k) for k in np.flatnonzero(ids == i))
            blocks += [members] if cor[members[0]] and len(members) > 1 else [(k,) for k in members]
        assert t.blocks == tuple(blocks)


_BRMS_PARAMETERS = ["b_Intercept", "b_Days", "sd_Subject__Intercept", "sd_Subject__Days",
                    "cor_Subject__Intercept__Days", "sigma"]


@pytest.mark.slow
def test_brm_and_the_generated_program_agree_on_sleepstudy(tmp_path):
    """brms::brm() and make_stancode()'s program: one model, two MCMC fits (means within 0.2 SD, SDs within 15 %)."""
    pytest.importorskip("stan")
    try:
        importr("brms")
        importr("rstan")
    except Exception as error:  # noqa: BLE001
        pytest.skip(f"R package brms or rstan cannot be loaded ({error}); scripts/setup-r.sh installs them")
    from amortbayes.data import load_sleepstudy
    from amortbayes.formula.model import FormulaModel
    from amortbayes.formula.stan import make_stancode, make_standata, stan_draws_to_brms
    from amortbayes.reference import fit_stan

    df = load_sleepstudy()
    r_df = ro.r("as.data.frame(lme4::sleepstudy)")
    np.testing.assert_allclose(np.asarray(r_df.rx2("Reaction")), df.Reaction)  # the same data on both sides
    np.testing.assert_allclose(np.asarray(r_df.rx2("Days")), df.Days)
    formula = "Reaction ~ Days + (Days | Subject)"
    model = FormulaModel(parse_terms(formula, df))

    # brms under the same priors (brms, like the package, puts the Intercept prior on the centred intercept)
    set_prior = ro.r("brms::set_prior")
    priors = [set_prior(p.stan(), **{"class": p.class_, "coef": p.coef}) for p in model.priors]
    prior = ro.r("function(...) do.call(c, list(...))")(*priors)
    print("\npriors:\n", ro.r("function(p) paste(capture.output(print(p)), collapse='\n')")(prior)[0])
    fit = ro.r("brms::brm")(ro.Formula(formula), data=r_df, prior=prior, backend="rstan", chains=2, iter=2000,
                            seed=1, refresh=0)
    as_draws = ro.r("function(fit, v) as.data.frame(as.matrix(fit, variable = v))")
    brm_draws = as_draws(fit, ro.StrVector(_BRMS_PARAMETERS))
    with _CONVERT.context():
        brm_draws = ro.conversion.get_conversion().rpy2py(brm_draws)
    rhat = ro.r("function(fit) max(brms::rhat(fit), na.rm = TRUE)")(fit)[0]

    # the package's program, sampled by pystan with the same number of chains, warmup and draws
    (tmp_path / "formula_brms.stan").write_text(make_stancode(model))
    ours = fit_stan("formula_brms", make_standata(model), chains=2, warmup=1000, draws=1000, seed=1,
                    stan_dir=tmp_path)
    d = ours.draws
    mine = stan_draws_to_brms({"b": d[["b[1]", "b[2]"]].to_numpy(), "sd_g": d[["sd_g[1]", "sd_g[2]"]].to_numpy(),
                               "Omega": d[["Omega[1,1]", "Omega[1,2]", "Omega[2,1]", "Omega[2,2]"]]
                               .to_numpy().reshape(-1, 2, 2), "sigma": d["sigma"].to_numpy()}, model)

    table = pd.DataFrame({
        "brms_mean": [brm_draws[v].mean() for v in _BRMS_PARAMETERS],
        "ours_mean": [np.mean(mine[v]) for v in _BRMS_PARAMETERS],
        "brms_sd": [brm_draws[v].std() for v in _BRMS_PARAMETERS],
        "ours_sd": [np.std(mine[v], ddof=1) for v in _BRMS_PARAMETERS],
    }, index=_BRMS_PARAMETERS)
    table["mean_diff_in_sd"] = (table.ours_mean - table.brms_mean) / table.brms_sd
    table["sd_ratio"] = table.ours_sd / table.brms_sd
    print(f"\nbrms: {len(brm_draws)} draws, max Rhat {rhat:.3f}; generated program: {len(d)} draws, max Rhat "
          f"{ours.max_rhat:.3f}, min bulk ESS {ours.min_ess_bulk:.0f}, {ours.divergences} divergences\n"
          f"{table.to_string(float_format=lambda v: f'{v:.3f}')}")
    assert rhat < 1.05 and ours.max_rhat < 1.05
    assert (table.mean_diff_in_sd.abs() < 0.2).all(), table
    assert ((table.sd_ratio - 1).abs() < 0.15).all(), table
