"""amortize(): formula to trained amortizer to draws in brms' names and layouts (a tiny budget: structure, not accuracy)."""

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
                    draws=200, progress=False)


def test_draws_carry_brms_names_and_respect_supports(fitted):
    d = fitted.draws()
    assert list(d.columns[:6]) == ["b_Intercept", "b_Days", "sd_Subject__Intercept", "sd_Subject__Days",
                                   "cor_Subject__Intercept__Days", "sigma"]
    assert "r_Subject[308,Intercept]" in d.columns and "r_Subject[372,Days]" in d.columns
    assert d.shape == (200, 6 + 2 * 18)
    assert (d[["sd_Subject__Intercept", "sd_Subject__Days", "sigma"]] > 0).all().all()
    assert (d["cor_Subject__Intercept__Days"].abs() < 1).all()


def test_summary_and_fixef_have_brms_layout(fitted):
    s = fitted.summary()
    assert list(s["population"].index) == ["Intercept", "Days"]
    assert list(s["group"].index) == ["sd(Intercept)", "sd(Days)", "cor(Intercept,Days)"]
    assert list(s["family"].index) == ["sigma"]
    assert list(s["population"].columns) == ["Estimate", "Est.Error", "l-95% CI", "u-95% CI"]
    fe = fitted.fixef()
    assert list(fe.columns) == ["Estimate", "Est.Error", "Q2.5", "Q97.5"]
    np.testing.assert_allclose(fe.loc["Days", "Estimate"], fitted.draws()["b_Days"].mean())
    assert "Population-Level Effects:" in repr(fitted) and "~Subject" in repr(fitted)


def test_bad_arguments_are_named():
    df = load_sleepstudy()
    with pytest.raises(ValueError, match="method must be 'importance' or 'amortized'"):
        amortize("Reaction ~ Days + (1 | Subject)", df, method="exact")
    with pytest.raises(ValueError, match="budget is a number of training steps"):
        amortize("Reaction ~ Days + (1 | Subject)", df, budget=0)
    with pytest.raises(ValueError, match="unknown family 'gamma'"):
        amortize("Reaction ~ Days + (1 | Subject)", df, family="gamma", budget=1)


def test_ranef_and_coef_per_level(fitted):
    d = fitted.draws()
    re_, co = fitted.ranef(), fitted.coef()
    assert re_.shape == (18, 8) and list(re_.index[:2]) == ["308", "309"]
    assert list(re_.columns.get_level_values(0).unique()) == ["Intercept", "Days"]
    np.testing.assert_allclose(re_.loc["309", ("Days", "Estimate")], d["r_Subject[309,Days]"].mean())
    np.testing.assert_allclose(co.loc["309", ("Days", "Estimate")], (d["r_Subject[309,Days]"] + d["b_Days"]).mean())
    np.testing.assert_allclose(co.loc["309", ("Days", "Q97.5")], (d["r_Subject[309,Days]"] + d["b_Days"]).quantile(0.975))


def test_pointwise_log_lik_is_in_the_datas_row_order_and_loo_totals_it(fitted):
    from scipy import stats

    d = fitted.draws()
    df = load_sleepstudy()
    ll = fitted.log_lik()
    assert ll.shape == (200, 180)
    i = 37  # any row: its subject's effects at draw 5
    s, row = 5, df.iloc[i]
    mean = (d.loc[s, "b_Intercept"] + d.loc[s, f"r_Subject[{row.Subject},Intercept]"]
            + (d.loc[s, "b_Days"] + d.loc[s, f"r_Subject[{row.Subject},Days]"]) * row.Days)
    assert ll[s, i] == pytest.approx(stats.norm.logpdf(row.Reaction, mean, d.loc[s, "sigma"]), rel=1e-5)
    out = fitted.loo()
    assert len(out["pointwise"]) == 180
    assert out["elpd_loo"] == pytest.approx(out["pointwise"]["elpd"].sum())


def test_loo_in_passes_of_a_few_groups_equals_loo_in_one_pass(fitted):
    whole = fitted.loo(chunk_rows=10_000)
    passes = fitted.loo(chunk_rows=25)  # whole groups of 10 rows: passes of 2 subjects
    pd.testing.assert_frame_equal(passes["pointwise"], whole["pointwise"])
    assert passes["p_loo"] == pytest.approx(whole["p_loo"]) and passes["elpd_loo"] == pytest.approx(whole["elpd_loo"])
    np.testing.assert_array_equal(fitted.log_lik(chunk_rows=7), fitted.log_lik())  # a group larger than a pass


def test_a_pass_too_large_for_memory_is_refused_with_the_size_it_needs(fitted, monkeypatch):
    import amortbayes.memory as memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 1_000_000)  # a 1 MB machine
    with pytest.raises(memory.MemoryBudgetError, match=r"of 180 rows x 200 draws in one pass needs about 1.73 MB of "
                                                       r"memory, but 1 MB are available; pass chunk_rows= below 10,000"):
        fitted.loo(chunk_rows=10_000)
    with pytest.raises(memory.MemoryBudgetError, match=r"matrix of 200 draws x 180 rows needs about 288 kB"):
        monkeypatch.setattr(memory, "available_bytes", lambda: 100_000)
        fitted.log_lik()
    monkeypatch.setattr(memory, "available_bytes", lambda: 1_000_000)
    out = fitted.loo(chunk_rows=10)  # one subject per pass: 96 kB
    assert len(out["pointwise"]) == 180


def test_update_gives_new_datas_posterior_without_training(fitted):
    df = load_sleepstudy()
    same = fitted.update(df, draws=200, seed=0)
    np.testing.assert_allclose(same.draws().to_numpy(), fitted.draws().to_numpy())  # same data, same seed
    subset = df[df.Subject.isin(["308", "309", "310"])]
    with pytest.warns(UserWarning, match=r"number of groups J = \[3\] outside the trained range \[9, 27\]"):
        few = fitted.update(subset, draws=200)
    assert [c for c in few.draws().columns if c.startswith("r_")][:3] == [
        "r_Subject[308,Intercept]", "r_Subject[309,Intercept]", "r_Subject[310,Intercept]"]
    assert few.ranef().shape == (3, 8) and few.log_lik().shape == (200, 30)
    assert fitted.history is few.history  # no training happened


def test_update_with_an_unseen_factor_level_is_refused():
    df = load_sleepstudy().assign(phase=lambda d: np.where(d.Days < 5, "early", "late"))
    fit = amortize("Reaction ~ Days + phase + (1 | Subject)", df, budget=2, method="amortized", draws=20,
                   progress=False)
    new = df.assign(phase=np.where(df.Days < 3, "early", np.where(df.Days < 7, "late", "post")))
    with pytest.raises(ValueError, match=r"levels \(post\) in 'phase' are not present.*a factor level the fitted data did not have"):
        fit.update(new)


def test_a_saved_fit_loads_back_with_the_same_posterior(fitted, tmp_path):
    from amortbayes.formula import AmortizedFit

    df = load_sleepstudy().assign(Subject=lambda d: d.Subject.astype(str))
    fit = amortize("Reaction ~ Days + (Days | Subject)", df, prior=[], budget=20, method="amortized", draws=100,
                   progress=False, seed=3)
    fit.save(tmp_path / "fit")
    back = AmortizedFit.load(tmp_path / "fit", draws=100, seed=3)
    np.testing.assert_allclose(back.draws().to_numpy(), fit.draws().to_numpy(), rtol=1e-6)
    assert back.model.parameter_names == fit.model.parameter_names and back.method == "amortized"
    with pytest.raises(ValueError, match="holds no saved formula fit"):
        AmortizedFit.load(tmp_path)
    with pytest.raises(ValueError, match=r"this fit is an update\(\) on new data"):
        fit.update(df, draws=10).save(tmp_path / "updated")


def test_file_loads_a_stored_fit_for_the_same_spec_and_retrains_for_another(tmp_path):
    df = load_sleepstudy()
    kw = dict(budget=5, method="amortized", draws=50, progress=False, file=tmp_path / "fit")
    first = amortize("Reaction ~ Days + (1 | Subject)", df, **kw)
    again = amortize("Reaction ~ Days + (1 | Subject)", df, **kw)
    assert first.history is not None and again.history is None  # loaded, not trained
    np.testing.assert_allclose(again.draws().to_numpy(), first.draws().to_numpy(), rtol=1e-6)
    other = amortize("Reaction ~ Days + (1 | Subject)", df.assign(Reaction=df.Reaction + 1), **kw)
    assert other.history is not None  # other data: trained again


def test_powerscale_sensitivity_of_a_fit_is_priorsenses_by_reweighting(fitted):
    """Equal to arviz.psens on the same draws, log prior and pointwise log likelihood."""
    az = pytest.importorskip("arviz")
    xr = pytest.importorskip("xarray")
    import torch

    table = fitted.powerscale_sensitivity()
    assert list(table["variable"]) == ["b_Intercept", "b_Days", "sd_Subject__Intercept", "sd_Subject__Days",
                                       "cor_Subject__Intercept__Days", "sigma"]
    assert set(table["diagnosis"]) <= {"-", "potential prior-data conflict", "potential strong prior / weak likelihood"}
    d = fitted.draws()
    lp = fitted.model.global_log_prior(torch.from_numpy(fitted.posterior.global_draws[0])).double().numpy()
    idata = az.from_dict(posterior={"b_Days": d["b_Days"].to_numpy()[None]},
                         log_likelihood={"y": fitted.log_lik()[None]})
    idata.add_groups({"log_prior": xr.Dataset({"lp": xr.DataArray(lp[None], dims=("chain", "draw"))})})
    row = table.set_index("variable").loc["b_Days"]
    assert row["prior"] == pytest.approx(float(az.psens(idata, component="prior")["b_Days"]), rel=1e-6)
    assert row["likelihood"] == pytest.approx(float(az.psens(idata, component="likelihood")["b_Days"]), rel=1e-6)
    with pytest.raises(ValueError, match="unknown variable"):
        fitted.powerscale_sensitivity(["b_Weeks"])
