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
