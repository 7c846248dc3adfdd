"""The generated Stan program: its data are the model's design, and (slow) it compiles and samples sleepstudy as lme4 fits it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("formulae")

from amortbayes.data import load_sleepstudy  # noqa: E402
from amortbayes.formula import parse_terms, prior  # noqa: E402
from amortbayes.formula.model import FormulaModel  # noqa: E402
from amortbayes.formula.stan import make_stancode, make_standata, stan_draws_to_brms  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return FormulaModel(parse_terms("Reaction ~ Days + (Days | Subject)", load_sleepstudy()),
                        priors=[prior("normal(10, 20)", coef="Days")])


def test_standata_is_the_models_design(model):
    d = make_standata(model)
    df = load_sleepstudy()
    assert (d["N"], d["P"], d["K"], d["J"]) == (180, 2, 2, 18)
    np.testing.assert_allclose(np.asarray(d["X"])[:, 1], df.Days)
    np.testing.assert_allclose(d["Y"], df.Reaction)
    np.testing.assert_allclose(d["Xbar"], [1.0, 4.5])
    assert np.asarray(d["g"]).min() == 1 and np.asarray(d["g"]).max() == 18


def test_stancode_states_the_models_priors_and_likelihood(model):
    code = make_stancode(model)
    assert "b_c[2] ~ normal(10, 20);" in code and "b_c[1] ~ student_t(3, 288.7, 59.3);" in code
    assert "sd_g[1] ~ student_t(3, 0, 59.3);" in code and "L_1 ~ lkj_corr_cholesky(1);" in code
    assert "real<lower=0> sigma;" in code and "Y ~ normal(mu, sigma);" in code
    # the uncorrelated version has no Cholesky factor to sample
    m2 = FormulaModel(parse_terms("Reaction ~ Days + (Days || Subject)", load_sleepstudy()))
    assert "lkj_corr_cholesky" not in make_stancode(m2) and "cholesky_factor_corr" not in make_stancode(m2)


@pytest.mark.slow
def test_generated_program_samples_sleepstudy_like_lme4(model, tmp_path):
    pytest.importorskip("stan")
    from amortbayes.reference import fit_stan

    (tmp_path / "formula_sleepstudy.stan").write_text(make_stancode(model))
    fit = fit_stan("formula_sleepstudy", make_standata(model), chains=2, warmup=500, draws=500, stan_dir=tmp_path)
    d = fit.draws
    draws = stan_draws_to_brms({"b": d[["b[1]", "b[2]"]].to_numpy(), "sd_g": d[["sd_g[1]", "sd_g[2]"]].to_numpy(),
                                "Omega": d[["Omega[1,1]", "Omega[1,2]", "Omega[2,1]", "Omega[2,2]"]]
                                .to_numpy().reshape(-1, 2, 2), "sigma": d["sigma"].to_numpy()}, model)
    assert fit.max_rhat < 1.05
    # lme4::lmer(Reaction ~ Days + (Days | Subject)): fixed effects 251.41 and 10.47 (SE 6.8 and 1.5)
    assert abs(draws["b_Intercept"].mean() - 251.41) < 2.5 and abs(draws["b_Days"].mean() - 10.47) < 0.6
    assert 20 < np.median(draws["sd_Subject__Intercept"]) < 35 and 4 < np.median(draws["sd_Subject__Days"]) < 8
    assert 23 < draws["sigma"].mean() < 28


def _glmm_data(seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    g = np.repeat([f"g{j}" for j in range(6)], 8)
    x, z = rng.normal(size=48), rng.normal(size=48)
    f = np.tile(["a", "b", "c"], 16)
    return pd.DataFrame({"g": g, "x": x, "z": z, "f": f, "y": 1 + x + rng.normal(size=48),
                         "pos": np.exp(0.3 * x + rng.normal(size=48) * 0.5), "b": rng.binomial(1, 0.5, 48),
                         "k": rng.poisson(np.exp(0.5 + 0.3 * x)), "n": np.full(48, 12)})


STAN_CASES = {
    "gaussian": ("y ~ x * f + (1 + x | g) + (0 + z | g)", "gaussian"),
    "student": ("y ~ x + (x || g)", "student"),
    "lognormal": ("pos ~ x + (1 | g)", "lognormal"),
    "bernoulli": ("b ~ x + (1 | g)", "bernoulli"),
    "binomial": ("k | trials(n) ~ x + (1 | g)", "binomial"),
    "poisson": ("k ~ scale(x) + I(x^2) + (1 | g)", "poisson"),
    "negbinomial": ("k ~ 0 + f + (1 | g)", "negbinomial"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(STAN_CASES))
def test_generated_program_compiles_and_samples_for_every_family_and_term_type(case):
    pytest.importorskip("stan")
    from amortbayes.formula.checks import stan_draws

    formula, family = STAN_CASES[case]
    m = FormulaModel(parse_terms(formula, _glmm_data()), family)
    fit, draws = stan_draws(m, chains=2, warmup=300, draws=300)
    assert fit.max_rhat < 1.1
    assert set(m.parameter_names) <= set(draws.columns)
    assert np.isfinite(draws.to_numpy()).all()
    t = m.terms
    assert f"r_g[g0,{t.group_names[0]}]" in draws.columns
    # the priors' bounds hold in Stan's draws as in the simulator's
    for name in m.parameter_names:
        if name.startswith("sd_") or name in ("sigma", "shape"):
            assert (draws[name] > 0).all()
        if name == "nu":
            assert (draws[name] >= 1).all()
