"""A formula-built two-level model: brms' parameter names, its priors and likelihood against scipy, designs like the user's."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

pytest.importorskip("formulae")

from amortbayes.data import load_sleepstudy  # noqa: E402
from amortbayes.formula import parse_terms, prior  # noqa: E402
from amortbayes.formula.model import FormulaModel, lkj_log_normalizer  # noqa: E402


@pytest.fixture(scope="module")
def model():
    # the rows layout: these tests check row-level densities and designs against scipy; the moments
    # layout (the gaussian default) is checked against this one in test_formula_moments.py
    return FormulaModel(parse_terms("Reaction ~ Days + (Days | Subject)", load_sleepstudy()), group_data="rows")


def test_parameters_are_named_as_brms_names_them(model):
    assert model.parameter_names == ("b_Intercept", "b_Days", "sd_Subject__Intercept", "sd_Subject__Days",
                                     "cor_Subject__Intercept__Days", "sigma")
    assert model.local_parameter_names == ("r_Subject[.,Intercept]", "r_Subject[.,Days]")
    assert model.n_groups == (9, 27) and model.n_obs == (10, 10)


def test_the_intercept_prior_is_on_centred_predictors(model):
    theta = model.sample_global(20_000, torch.Generator().manual_seed(0)).numpy()
    centred = theta[:, 0] + theta[:, 1] * 4.5  # mean(Days) = 4.5
    assert stats.kstest(centred, stats.t(3, 288.7, 59.3).cdf).pvalue > 0.001
    assert stats.kstest(theta[:, 4], stats.uniform(-1, 2).cdf).pvalue > 0.001  # lkj(1) on a 2 x 2 matrix
    assert (theta[:, [2, 3, 5]] > 0).all()


def test_global_log_prior_is_the_sum_of_the_stated_priors(model):
    theta = model.sample_global(5, torch.Generator().manual_seed(1))
    b0, b1, sd0, sd1, cor, sigma = theta.T.numpy()
    t3 = stats.t(3, 0, 59.3)
    expected = (stats.t(3, 288.7, 59.3).logpdf(b0 + 4.5 * b1) + stats.norm(0, model._prior_of[1].args[1]).logpdf(b1)
                + t3.logpdf(sd0) + t3.logpdf(sd1) + t3.logpdf(sigma) + 3 * math.log(2) - math.log(2))
    np.testing.assert_allclose(model.global_log_prior(theta).numpy(), expected, rtol=1e-8)


def test_user_priors_change_the_model():
    m = FormulaModel(parse_terms("Reaction ~ Days + (Days | Subject)", load_sleepstudy()),
                     priors=[prior("normal(10, 1)", coef="Days"), prior("lkj(2)", class_="cor")])
    theta = m.sample_global(20_000, torch.Generator().manual_seed(2)).numpy()
    assert abs(theta[:, 1].mean() - 10) < 0.05 and abs(theta[:, 1].std() - 1) < 0.03
    assert stats.kstest((theta[:, 4] + 1) / 2, stats.beta(2, 2).cdf).pvalue > 0.001


def test_local_prior_and_likelihood_match_scipy(model):
    theta = model.sample_global(3, torch.Generator().manual_seed(4))
    r = model.sample_local(theta, 18, torch.Generator().manual_seed(5))
    for k in range(3):
        sd, cor = theta[k, 2:4].numpy(), theta[k, 4].item()
        cov = np.diag(sd) @ np.array([[1, cor], [cor, 1]]) @ np.diag(sd)
        np.testing.assert_allclose(model.local_log_prior(theta[k], r[k]).numpy(),
                                   stats.multivariate_normal(np.zeros(2), cov).logpdf(r[k].numpy()), rtol=1e-6)
    groups = model.observed()
    x = torch.as_tensor(np.stack(groups), dtype=torch.float64)
    ll = model.log_likelihood(theta[0], r[0], x, torch.ones(x.shape[:2], dtype=torch.float64))
    df = load_sleepstudy()
    days = np.stack([g[:, 1] for g in groups])
    mean = theta[0, 0].item() + r[0, :, :1].numpy() + (theta[0, 1].item() + r[0, :, 1:].numpy()) * days
    expected = stats.norm(mean, theta[0, 5].item()).logpdf(np.stack([g[:, -1] for g in groups])).sum(1)
    np.testing.assert_allclose(ll.numpy(), expected, rtol=1e-6)
    assert np.isclose(np.stack(groups)[..., -1].sum(), df.Reaction.sum(), rtol=1e-6)


def test_simulated_designs_resample_the_users_rows(model):
    batch = model.simulate(16, torch.Generator().manual_seed(6))
    x, mask = batch["x"], batch["mask"]
    assert x.shape[-1] == 5  # [X: 1, Days | Z: 1, Days | Reaction]
    assert batch["theta_global"].shape == (16, 6) and batch["theta_local"].shape[-1] == 2
    rows = x[mask > 0]
    np.testing.assert_allclose(rows[:, [0, 2]].numpy(), 1.0)  # the intercept columns
    np.testing.assert_allclose(rows[:, 1], rows[:, 3])  # Days in X and in Z
    assert set(np.unique(rows[:, 1].numpy())) <= set(range(10))
    assert 9 <= batch["group_mask"].sum(1).min() and batch["group_mask"].sum(1).max() <= 27


def test_lkj_normalizer_of_a_2x2_matrix_is_the_scaled_beta():
    for eta in (0.5, 1.0, 2.0, 4.0):
        # r = 2u - 1, u ~ Beta(eta, eta): density (1 - r^2)^(eta - 1) / (2^(2 eta - 1) B(eta, eta))
        assert lkj_log_normalizer(2, eta) == pytest.approx((2 * eta - 1) * math.log(2) + math.log(
            math.gamma(eta) ** 2 / math.gamma(2 * eta)))


def test_formulas_without_groups_or_with_wrong_responses_are_refused():
    df = load_sleepstudy()
    with pytest.raises(ValueError, match="needs a group term"):
        FormulaModel(parse_terms("Reaction ~ Days", df))
    with pytest.raises(ValueError, match="family 'poisson' needs non-negative integer counts"):
        FormulaModel(parse_terms("Reaction ~ Days + (1 | Subject)", df.assign(Reaction=df.Reaction + 0.5)),
                     family="poisson")
    counts = df.assign(s=df.Days, n=8)  # Days 9 > 8 trials in each of 18 subjects
    with pytest.raises(ValueError, match="successes above trials in 18 row"):
        FormulaModel(parse_terms("s | trials(n) ~ 1 + (1 | Subject)", counts), family="binomial")
    with pytest.raises(ValueError, match=r"binomial' needs the number of trials"):
        FormulaModel(parse_terms("s ~ 1 + (1 | Subject)", counts), family="binomial")
    with pytest.raises(ValueError, match="only family 'binomial' reads"):
        FormulaModel(parse_terms("s | trials(10) ~ 1 + (1 | Subject)", counts), family="poisson")


def test_binomial_rows_carry_their_trials_and_match_scipy():
    rng = np.random.default_rng(3)
    d = pd.DataFrame({"g": np.repeat(list("abcdef"), 5), "x": rng.normal(size=30), "n": rng.integers(1, 20, 30)})
    d["s"] = rng.binomial(d.n, 0.4)
    m = FormulaModel(parse_terms("s | trials(n) ~ x + (1 | g)", d), family="binomial")
    assert m.data_names == ("X:Intercept", "X:x", "Z:Intercept", "trials", "s")
    assert m.parameter_names == ("b_Intercept", "b_x", "sd_g__Intercept")
    batch = m.simulate(16, torch.Generator().manual_seed(2))
    x, mask = batch["x"], batch["mask"] > 0
    trials, y = x[..., 3][mask], x[..., 4][mask]
    assert (y <= trials).all() and (y >= 0).all() and (y == y.round()).all()
    assert set(trials.numpy().astype(int)) <= set(d.n)  # the trials of the user's rows
    theta = m.sample_global(2, torch.Generator().manual_seed(1))
    r = m.sample_local(theta, 6, torch.Generator().manual_seed(2))
    xs = torch.as_tensor(np.stack(m.observed()), dtype=torch.float64)
    ll = m.log_likelihood(theta[0], r[0], xs, torch.ones(xs.shape[:2], dtype=torch.float64)).numpy()
    eta = theta[0, 0].item() + theta[0, 1].item() * xs[..., 1].numpy() + r[0, :, :1].numpy()
    expected = stats.binom(xs[..., 3].numpy(), 1 / (1 + np.exp(-eta))).logpmf(xs[..., 4].numpy()).sum(1)
    np.testing.assert_allclose(ll, expected, rtol=1e-6)


def test_lognormal_default_priors_are_scaled_on_the_log_response():
    from amortbayes.formula import default_prior

    table = default_prior("Reaction ~ Days + (1 | Subject)", load_sleepstudy(), "lognormal").set_index("class")
    # brms: student_t(3, median(log y), mad(log y)) floored at 2.5
    assert table.loc["Intercept", "prior"] == "student_t(3, 5.7, 2.5)"
    assert table.loc["sigma", "prior"] == "student_t(3, 0, 2.5)"


def test_a_simulated_group_of_the_users_size_holds_one_users_group_rows(model):
    # sleepstudy: every subject has Days 0..9 once; so must every simulated group of 10 rows
    batch = model.simulate(8, torch.Generator().manual_seed(7))
    days = batch["x"][..., 1][batch["group_mask"] > 0]  # (groups, 10)
    np.testing.assert_array_equal(np.sort(days.numpy(), axis=-1), np.tile(np.arange(10.0), (days.shape[0], 1)))


def test_a_design_column_constant_in_training_does_not_flag_its_own_value():
    from amortbayes.networks.standardize import DataRange

    r = DataRange(("x", "y"))
    x = torch.randn(50, 10, 2)
    x[..., 0] = torch.linspace(0, 9, 10) / 3.1  # the same design in every simulation (float32 rounding)
    r.fit(x, torch.ones(50, 10))
    observed = x[:1].double() * (1 + 1e-7)
    assert r.outside(observed.float(), torch.ones(1, 10)) == []
    assert r.outside(x[:1] * torch.tensor([1.01, 1.0]), torch.ones(1, 10))  # a 1 % different design is flagged


def test_a_singular_group_covariance_has_zero_prior_density_not_an_error(model):
    theta = model.sample_global(2, torch.Generator().manual_seed(0))
    theta[1, 4] = 1.0 + 1e-6  # |cor| at 1 (beyond it by rounding): an adaptive proposal reaches it in floats
    r = torch.zeros(2, 3, 2, dtype=theta.dtype)
    lp = model.local_log_prior(theta, r)
    assert torch.isfinite(lp[0]).all() and torch.isneginf(lp[1]).all()


def test_gaussian_group_marginal_is_the_multivariate_normal_of_the_group(model):
    theta = model.sample_global(4, torch.Generator().manual_seed(3))
    rows = torch.as_tensor(model.observed()[2], dtype=torch.float64)  # one subject: [1, Days, 1, Days, Reaction]
    mask = torch.ones(10, dtype=torch.float64)
    mask[7:] = 0  # padded rows do not count
    got = model.group_log_marginal(theta, rows, mask).numpy()
    for s in range(4):
        sd, cor, sigma = theta[s, 2:4].numpy(), theta[s, 4].item(), theta[s, 5].item()
        cov_r = np.diag(sd) @ np.array([[1, cor], [cor, 1]]) @ np.diag(sd)
        Z = rows[:7, 2:4].numpy()
        mean = rows[:7, :2].numpy() @ theta[s, :2].numpy()
        exact = stats.multivariate_normal(mean, Z @ cov_r @ Z.T + sigma**2 * np.eye(7)).logpdf(rows[:7, 4].numpy())
        assert got[s] == pytest.approx(exact, rel=1e-8)
    assert not hasattr(FormulaModel(parse_terms("Reaction ~ Days + (1 | Subject)", load_sleepstudy()),
                                    family="student"), "group_log_marginal")


def test_gaussian_local_posterior_draws_match_the_conjugate_posterior(model):
    theta = model.sample_global(1, torch.Generator().manual_seed(5)).expand(40_000, -1)
    rows = torch.as_tensor(model.observed()[4], dtype=torch.float64)
    mask = torch.ones(10, dtype=torch.float64)
    r = model.sample_local_posterior(theta, rows, mask, torch.Generator().manual_seed(6)).numpy()
    sd, cor, sigma = theta[0, 2:4].numpy(), theta[0, 4].item(), theta[0, 5].item()
    prior_cov = np.diag(sd) @ np.array([[1, cor], [cor, 1]]) @ np.diag(sd)
    Z, X, y = rows[:, 2:4].numpy(), rows[:, :2].numpy(), rows[:, 4].numpy()
    V = np.linalg.inv(np.linalg.inv(prior_cov) + Z.T @ Z / sigma**2)
    m = V @ Z.T @ (y - X @ theta[0, :2].numpy()) / sigma**2
    np.testing.assert_allclose(r.mean(0), m, atol=4 * np.sqrt(np.diag(V) / 40_000).max())
    np.testing.assert_allclose(np.cov(r.T), V, rtol=0.05, atol=0.03 * np.sqrt(V[0, 0] * V[1, 1]))


def test_lognormal_rows_hold_log_y_and_the_likelihood_is_lognormal_in_y():
    df = load_sleepstudy()
    m = FormulaModel(parse_terms("Reaction ~ Days + (1 | Subject)", df), family="lognormal", group_data="rows")
    assert m.data_names[-1] == "log(Reaction)"
    rows = m.observed()
    np.testing.assert_allclose(rows[0][:, -1], np.log(df.Reaction[:10]), rtol=1e-6)
    batch = m.simulate(64, torch.Generator().manual_seed(0))  # brms' wide defaults: exp() would overflow
    assert torch.isfinite(batch["x"]).all()
    theta = m.sample_global(1, torch.Generator().manual_seed(2))
    r = m.sample_local(theta, 18, torch.Generator().manual_seed(3))
    x = torch.as_tensor(np.stack(rows), dtype=torch.float64)
    ll = m.log_likelihood(theta[0], r[0], x, torch.ones(x.shape[:2], dtype=torch.float64)).numpy()
    mu = theta[0, 0].item() + theta[0, 1].item() * x[..., 1].numpy() + r[0, :, :1].numpy()
    expected = stats.lognorm(s=theta[0, 3].item(), scale=np.exp(mu)).logpdf(np.exp(x[..., -1].numpy())).sum(1)
    np.testing.assert_allclose(ll, expected, rtol=1e-6)


def test_count_rows_carry_log1p_of_the_counts_for_the_networks():
    df = load_sleepstudy().assign(k=lambda d: (d.Reaction // 10).astype(int))
    m = FormulaModel(parse_terms("k ~ Days + (1 | Subject)", df), family="poisson")
    assert m.data_names[-2:] == ("log1p(k)", "k")
    batch = m.simulate(8, torch.Generator().manual_seed(0))
    x, mask = batch["x"], batch["mask"] > 0
    np.testing.assert_allclose(x[..., -2][mask], torch.log1p(x[..., -1][mask]), rtol=1e-5)
    # the user's design is resampled without the response's columns
    assert m._user_design.shape[-1] == 3  # [X:Intercept, X:Days, Z:Intercept]


def test_lognormal_group_marginal_is_the_gaussian_one_of_log_y_less_its_jacobian():
    df = load_sleepstudy()
    ln = FormulaModel(parse_terms("Reaction ~ Days + (1 | Subject)", df), family="lognormal", group_data="rows")
    logged = FormulaModel(parse_terms("logR ~ Days + (1 | Subject)", df.assign(logR=np.log(df.Reaction))),
                          group_data="rows")
    theta = torch.tensor([[5.5, 0.03, 0.1, 0.2]], dtype=torch.float64)
    rows_ln = torch.as_tensor(ln.observed()[0], dtype=torch.float64)
    rows_g = torch.as_tensor(logged.observed()[0], dtype=torch.float64)
    mask = torch.ones(10, dtype=torch.float64)
    expected = logged.group_log_marginal(theta, rows_g, mask) - np.log(df.Reaction[:10]).sum()
    np.testing.assert_allclose(ln.group_log_marginal(theta, rows_ln, mask).numpy(), expected.numpy(), rtol=1e-7)  # rows are float32
