"""Predictions, LOGO, SBC and ArviZ export of a formula fit (tiny budgets: structure and exact identities, not accuracy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulae")

from amortbayes.data import load_sleepstudy  # noqa: E402
from amortbayes.formula.fit import amortize  # noqa: E402


@pytest.fixture(scope="module")
def fitted():
    return amortize("Reaction ~ Days + (Days | Subject)", load_sleepstudy(), budget=60, method="amortized",
                    draws=400, progress=False)


def test_epred_of_a_known_level_is_its_coefficients_times_the_design(fitted):
    d = fitted.draws()
    new = pd.DataFrame({"Subject": ["309", "309", "330"], "Days": [0.0, 5.0, 2.0]})  # no Reaction column
    ep = fitted.posterior_epred(new)
    assert ep.shape == (400, 3)
    expected = (d["b_Intercept"] + d["r_Subject[309,Intercept]"] + 5 * (d["b_Days"] + d["r_Subject[309,Days]"]))
    np.testing.assert_allclose(ep[:, 1], expected, rtol=1e-5, atol=1e-4)  # float32 sums of terms up to 1e3
    np.testing.assert_allclose(ep[:, 2], d["b_Intercept"] + d["r_Subject[330,Intercept]"]
                               + 2 * (d["b_Days"] + d["r_Subject[330,Days]"]), rtol=1e-5)
    # the fit's own data by default, in the data's row order
    np.testing.assert_allclose(fitted.posterior_epred()[:, 0], d["b_Intercept"] + d["r_Subject[308,Intercept]"],
                               rtol=1e-5)


def test_a_new_level_draws_its_effects_from_the_population(fitted):
    d = fitted.draws()
    new = pd.DataFrame({"Subject": ["new"], "Days": [0.0]})
    with pytest.raises(ValueError, match=r"level\(s\) \['new'\] of 'Subject'"):
        fitted.posterior_epred(new, allow_new_levels=False)
    r_new = fitted.posterior_epred(new)[:, 0] - d["b_Intercept"].to_numpy()
    z = r_new / d["sd_Subject__Intercept"].to_numpy()  # standard normal draw by draw
    assert abs(z.mean()) < 4 / np.sqrt(400) and abs(z.std() - 1) < 0.15
    np.testing.assert_array_equal(fitted.posterior_epred(new, seed=3), fitted.posterior_epred(new, seed=3))


def test_posterior_predict_adds_the_observation_noise(fitted):
    d = fitted.draws()
    new = pd.DataFrame({"Subject": ["309"] * 2000, "Days": [3.0] * 2000})
    ep, pp = fitted.posterior_epred(new), fitted.posterior_predict(new)
    resid = (pp - ep) / d["sigma"].to_numpy()[:, None]
    assert abs(resid.mean()) < 0.01 and abs(resid.std() - 1) < 0.01
    table = fitted.predict(new.iloc[:3])
    assert list(table.columns) == ["Estimate", "Est.Error", "Q2.5", "Q97.5"] and len(table) == 3
    assert list(fitted.fitted(new.iloc[:2]).columns) == ["Estimate", "Est.Error", "Q2.5", "Q97.5"]


def test_newdata_with_an_unseen_factor_level_is_refused():
    df = load_sleepstudy().assign(arm=lambda x: np.where(x.Days < 5, "a", "b"))
    fit = amortize("Reaction ~ arm + (1 | Subject)", df, budget=2, method="amortized", draws=20, progress=False)
    with pytest.raises(ValueError, match=r"levels \(c\) in 'arm' are not present"):
        fit.posterior_epred(pd.DataFrame({"Subject": ["308"], "arm": ["c"]}))


def test_logo_gives_one_finite_elpd_per_subject(fitted):
    table = fitted.logo(n=64)
    assert len(table) == 18 and np.isfinite(table["elpd"]).all()
    assert list(table["group"].astype(str)[:2]) == ["308", "309"]


def test_sbc_ranks_every_global_and_one_local_per_data_set(fitted):
    res = fitted.sbc(n_sims=40, n_draws=20)
    assert list(res.table["level"]) == ["global"] * 6 + ["local"] * 2
    assert list(res.table["parameter"])[-2:] == ["r_Subject[j,Intercept]", "r_Subject[j,Days]"]
    assert res.draws.shape == (40, 20, 8) and res.truth.shape == (40, 8)
    fig = res.plot()
    assert len(fig.axes) >= 8
    with pytest.raises(ValueError, match="n_sims >= 20"):
        fitted.sbc(n_sims=5)


def test_binomial_fit_predicts_counts_within_trials():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"herd": np.repeat([f"h{i}" for i in range(8)], 4), "period": np.tile([1.0, 2, 3, 4], 8),
                       "size": rng.integers(2, 30, 32)})
    df["incidence"] = rng.binomial(df["size"], 0.2)
    fit = amortize("incidence | trials(size) ~ period + (1 | herd)", df, family="binomial", budget=20, draws=100,
                   progress=False)
    pp = fit.posterior_predict()
    assert pp.shape == (100, 32) and (pp <= df["size"].to_numpy()).all() and (pp >= 0).all()
    np.testing.assert_allclose(fit.posterior_epred().max(0) <= df["size"].to_numpy(), True)
    assert fit.log_lik().shape == (100, 32) and np.isfinite(fit.log_lik()).all()


def test_to_arviz_holds_draws_log_likelihood_and_data(fitted):
    pytest.importorskip("arviz")
    idata = fitted.to_arviz()
    assert idata.posterior["b_Days"].shape == (1, 400)
    assert idata.posterior["r_Subject"].shape == (1, 400, 18, 2)
    assert list(idata.posterior["r_Subject"].coords["coef"].values) == ["Intercept", "Days"]
    assert idata.log_likelihood["Reaction"].shape == (1, 400, 180)
    np.testing.assert_allclose(idata.observed_data["Reaction"].values, load_sleepstudy().Reaction)


@pytest.mark.slow
def test_compare_stan_fits_the_generated_program_and_lines_up_every_parameter(fitted, tmp_path):
    pytest.importorskip("stan")
    table = fitted.compare_stan(chains=2, warmup=300, draws=300, locals_=True, plot=tmp_path / "vs_stan.png")
    assert list(table.index[:6]) == list(fitted.model.parameter_names)
    assert "r_Subject[308,Days]" in table.index and len(table) == 6 + 36
    stan = table.attrs["stan"]
    assert stan.max_rhat < 1.1
    # lme4's estimates of sleepstudy: the reference side is a real fit of the same model
    assert abs(table.loc["b_Days", "mean_reference"] - 10.47) < 0.8
    assert (tmp_path / "vs_stan.png").stat().st_size > 0
