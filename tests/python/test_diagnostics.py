"""Diagnostics checked against a conjugate Gaussian model with a closed-form posterior.

theta ~ N(0, 1) per parameter, x_1..x_n | theta ~ N(theta, sigma^2), so the posterior is
N(m, s^2) with s^2 = 1 / (1 + n / sigma^2) and m = s^2 sum(x) / sigma^2.  Exact draws must
pass every check; shifted, over- and under-confident draws must fail them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from amortbayes.diagnostics import (
    c2st,
    calibration_error,
    expected_coverage,
    posterior_contraction,
    posterior_z_scores,
    recovery,
    sbc_check,
    sbc_check_ranks,
    sbc_ecdf_bands,
    sbc_ecdf_diff,
    sbc_ranks,
)

torch.set_num_threads(1)

SIGMA = 1.0
N_OBS = 5
POST_VAR = 1.0 / (1.0 + N_OBS / SIGMA**2)  # 1/6
POST_SD = math.sqrt(POST_VAR)


def conjugate(
    n_sims: int = 300, n_draws: int = 100, n_params: int = 2, *, shift: float = 0.0, scale: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Truth (S, D) and posterior draws (S, L, D): exact for shift=0, scale=1."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(n_sims, n_params))
    x = theta[:, None, :] + SIGMA * rng.normal(size=(n_sims, N_OBS, n_params))
    mean = POST_VAR * x.sum(axis=1) / SIGMA**2
    noise = rng.normal(size=(n_sims, n_draws, n_params))
    draws = mean[:, None, :] + shift * POST_SD + scale * POST_SD * noise
    return draws, theta


# ---------------------------------------------------------------- SBC


def test_sbc_ranks_counts_draws_below_truth() -> None:
    draws = np.array([[[0.1, 5.0], [0.5, 6.0], [0.9, 7.0]]])  # S=1, L=3, D=2
    assert sbc_ranks(draws, np.array([[0.6, 4.0]])).tolist() == [[2, 0]]
    assert sbc_ranks(draws[:, :, 0], np.array([1.0])).tolist() == [[3]]  # (S, L) and (S,) inputs
    draws, truth = conjugate(50, 20)
    ranks = sbc_ranks(draws, truth)
    assert ranks.shape == (50, 2) and ranks.dtype.kind == "i"
    assert ranks.min() >= 0 and ranks.max() <= 20


def test_ecdf_diff_is_zero_for_perfectly_uniform_ranks() -> None:
    n_draws = 9
    ranks = np.tile(np.arange(n_draws + 1), 3)  # every rank equally often
    band = sbc_ecdf_bands(ranks.size, n_draws)
    np.testing.assert_allclose(sbc_ecdf_diff(ranks, n_draws, band.z), 0.0, atol=1e-12)
    all_zero = sbc_ecdf_diff(np.zeros((30, 2), dtype=int), n_draws, band.z)
    np.testing.assert_allclose(all_zero, 1.0 - band.z[:, None] * np.ones((1, 2)))


def test_sbc_band_is_simultaneous_cached_and_deterministic() -> None:
    band = sbc_ecdf_bands(300, 100, alpha=0.05)
    assert band is sbc_ecdf_bands(300, 100, alpha=0.05)  # cached
    np.testing.assert_array_equal(band.z, np.arange(1, 101) / 101)
    assert np.all(band.lower < 0) and np.all(band.upper > 0)
    # Simultaneous: the pointwise level is far below alpha, so the band is wider than a
    # pointwise 95% binomial band (half-width about 1.96 sqrt(z(1-z)/S)) in the middle.
    assert band.gamma < 0.05 / 5
    mid = band.z.size // 2
    assert band.upper[mid] > 1.96 * math.sqrt(0.25 / 300) + 0.01
    other = sbc_ecdf_bands(300, 100, alpha=0.05, seed=1)
    np.testing.assert_allclose(other.upper, band.upper, atol=2.5 / 300)  # Monte Carlo error only


def test_sbc_exact_posterior_passes() -> None:
    draws, truth = conjugate(300, 100)
    result = sbc_check(draws, truth, parameter_names=["mu", "tau"])
    assert list(result.columns) == ["parameter", "max_abs_ecdf_diff", "passed", "n_sims", "n_draws"]
    assert result["parameter"].tolist() == ["mu", "tau"]
    assert result["passed"].all()
    assert (result["n_sims"] == 300).all() and (result["n_draws"] == 100).all()
    assert (result["max_abs_ecdf_diff"] < 0.1).all()


@pytest.mark.parametrize(
    "kind, shift, scale",
    [("shifted", 0.5, 1.0), ("over-confident", 0.0, 0.5), ("under-confident", 0.0, 2.0)],
)
def test_sbc_miscalibrated_posterior_fails(kind: str, shift: float, scale: float) -> None:
    draws, truth = conjugate(300, 100, shift=shift, scale=scale)
    result = sbc_check(draws, truth)
    assert not result["passed"].any(), kind


def test_sbc_false_fail_rate_matches_alpha() -> None:
    rng = np.random.default_rng(2024)
    # 200 independent checks at alpha = 0.01 on exactly uniform ranks: ~2 expected fails.
    ranks = rng.integers(0, 101, size=(300, 200))
    fails = int((~sbc_check_ranks(ranks, 100, alpha=0.01)["passed"]).sum())
    assert fails < 8
    # 400 checks at alpha = 0.05 through sbc_check on exact conjugate draws (each parameter
    # an independent replicate): the rate is near 0.05, so the band is neither too wide
    # (rate ~0) nor too narrow.
    draws, truth = conjugate(100, 30, n_params=400, seed=7)
    rate = 1.0 - sbc_check(draws, truth, alpha=0.05)["passed"].mean()
    assert 0.02 <= rate <= 0.09


# ---------------------------------------------------------------- recovery


def test_recovery_of_exact_posterior_matches_theory() -> None:
    draws, truth = conjugate(300, 100)
    result = recovery(draws, truth)
    assert list(result.columns) == ["parameter", "r2", "nrmse", "correlation"]
    # The posterior mean explains the prior variance minus the posterior variance.
    np.testing.assert_allclose(result["r2"], 1.0 - POST_VAR, atol=0.05)
    np.testing.assert_allclose(result["correlation"], math.sqrt(1.0 - POST_VAR), atol=0.03)
    spread = truth.max(axis=0) - truth.min(axis=0)
    np.testing.assert_allclose(result["nrmse"], POST_SD / spread, rtol=0.15)


def test_recovery_of_near_point_posterior_is_perfect() -> None:
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(200, 3))
    draws = truth[:, None, :] + 1e-3 * rng.normal(size=(200, 50, 3))
    result = recovery(draws, truth)
    assert (result["r2"] > 0.9999).all()
    assert (result["correlation"] > 0.9999).all()
    assert (result["nrmse"] < 1e-3).all()


# ---------------------------------------------------------------- z-scores, contraction


def test_z_scores_of_exact_posterior_are_standard_normal() -> None:
    draws, truth = conjugate(300, 100)
    z = posterior_z_scores(draws, truth)
    assert z.shape == (300, 2)
    assert abs(z.mean()) < 0.12
    assert abs(z.std() - 1.0) < 0.08
    z_over = posterior_z_scores(*conjugate(300, 100, scale=0.5))
    assert abs(z_over.std() - 2.0) < 0.2  # sd is halved, so z doubles


def test_contraction_matches_closed_form() -> None:
    draws, _ = conjugate(300, 100)
    contraction = posterior_contraction(draws, prior_sd=1.0)
    assert contraction.shape == (300, 2)
    np.testing.assert_allclose(contraction.mean(axis=0), 1.0 - POST_VAR, atol=0.01)
    # Draws whose sample variance is exactly s^2 give exactly 1 - s^2 / prior_var.
    unit = np.array([-1.0, 0.0, 1.0])  # sample variance (ddof=1) 1
    exact = 0.3 + POST_SD * unit[None, :, None] * np.ones((4, 1, 2))
    np.testing.assert_allclose(posterior_contraction(exact, np.array([1.0, 2.0])), [[1 - POST_VAR, 1 - POST_VAR / 4]] * 4)


# ---------------------------------------------------------------- coverage


def test_expected_coverage_of_exact_posterior_is_nominal() -> None:
    draws, truth = conjugate(300, 100)
    levels = (0.5, 0.8, 0.9, 0.95, 0.99)
    table = expected_coverage(draws, truth, levels=levels, parameter_names=["a", "b"])
    assert list(table.columns) == ["parameter", "level", "coverage"]
    assert len(table) == 10 and table["parameter"].tolist() == ["a"] * 5 + ["b"] * 5
    level = table["level"].to_numpy()
    tolerance = 3.0 * np.sqrt(level * (1.0 - level) / 300) + 0.015  # binomial + draw quantile error
    assert np.all(np.abs(table["coverage"].to_numpy() - level) < tolerance)


def test_expected_coverage_detects_over_and_under_confidence() -> None:
    over = expected_coverage(*conjugate(300, 100, scale=0.5), levels=[0.9])
    under = expected_coverage(*conjugate(300, 100, scale=2.0), levels=[0.5])
    # Theory: 2 Phi(0.5 * 1.645) - 1 = 0.59 and 2 Phi(2 * 0.674) - 1 = 0.82.
    assert (over["coverage"] < 0.7).all()
    assert (under["coverage"] > 0.72).all()


def test_calibration_error_small_for_exact_large_for_miscalibrated() -> None:
    exact = calibration_error(*conjugate(300, 100))
    over = calibration_error(*conjugate(300, 100, scale=0.5))
    under = calibration_error(*conjugate(300, 100, scale=2.0))
    assert list(exact.columns) == ["parameter", "calibration_error"]
    assert (exact["calibration_error"] < 0.05).all()
    assert (over["calibration_error"] > 0.15).all()
    assert (under["calibration_error"] > 0.1).all()


# ---------------------------------------------------------------- C2ST


def test_c2st_same_distribution_is_chance() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2000, 2)), rng.normal(size=(2000, 2))
    accuracy = c2st(a, b, seed=1)
    assert 0.45 <= accuracy <= 0.56
    assert c2st(a, b, seed=1) == accuracy  # deterministic under the seed


def test_c2st_separated_distributions() -> None:
    rng = np.random.default_rng(1)
    # Optimal accuracy for N(0,1) vs N(3,1) is Phi(1.5) = 0.933.
    accuracy = c2st(rng.normal(size=2000), rng.normal(3.0, 1.0, size=2000))
    assert 0.9 < accuracy < 0.96


def test_c2st_leaves_global_rng_untouched() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    rng = np.random.default_rng(0)
    c2st(rng.normal(size=(40, 2)), rng.normal(size=(40, 2)), epochs=2)
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())


def test_c2st_errors() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 2))
    with pytest.raises(ValueError, match="same number of columns"):
        c2st(a, rng.normal(size=(50, 3)))
    bad = a.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="b contains 1 non-finite"):
        c2st(a, bad)
    with pytest.raises(ValueError, match=r"a needs at least 2 \* folds = 10 rows"):
        c2st(a[:9], a)


# ---------------------------------------------------------------- user errors


def test_shape_mismatch_errors() -> None:
    draws, truth = conjugate(20, 10)
    with pytest.raises(ValueError, match="draws has 20 data sets .* truth has 19 rows"):
        sbc_check(draws, truth[:19])
    with pytest.raises(ValueError, match="draws has 2 parameters .* truth has 1 columns"):
        recovery(draws, truth[:, :1])
    with pytest.raises(ValueError, match=r"draws must have shape \(n_sims, n_draws, n_params\)"):
        expected_coverage(draws[0, 0], truth)
    with pytest.raises(ValueError, match="truth must have shape"):
        posterior_z_scores(draws, truth[:, 0])
    with pytest.raises(ValueError, match="prior_sd must be a scalar or have one entry per parameter"):
        posterior_contraction(draws, np.ones(3))


def test_non_finite_errors() -> None:
    draws, truth = conjugate(20, 10)
    draws[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="draws contains 1 non-finite value"):
        sbc_check(draws, truth)
    draws, truth = conjugate(20, 10)
    truth[0, 0] = np.inf
    with pytest.raises(ValueError, match="truth contains 1 non-finite value"):
        recovery(draws, truth)


def test_parameter_name_and_argument_errors() -> None:
    draws, truth = conjugate(20, 10)
    with pytest.raises(ValueError, match="parameter_names has 3 name.* but there are 2 parameters"):
        sbc_check(draws, truth, parameter_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="parameter_names has 1 name"):
        recovery(draws, truth, parameter_names=["a"])
    with pytest.raises(TypeError, match="parameter_names must be a sequence of strings"):
        expected_coverage(draws, truth, parameter_names="ab")
    with pytest.raises(ValueError, match="alpha must lie strictly between 0 and 1"):
        sbc_check(draws, truth, alpha=1.5)
    with pytest.raises(ValueError, match="levels must lie strictly between 0 and 1"):
        expected_coverage(draws, truth, levels=[0.5, 1.0])
    with pytest.raises(ValueError, match=r"ranks must lie in 0..n_draws = 0..10"):
        sbc_check_ranks(np.array([0, 3, 11]), 10)
    with pytest.raises(TypeError, match="draws must be a numeric array"):
        sbc_ranks(pd.DataFrame({"a": ["x", "y"]}), np.zeros(2))


def test_degenerate_input_errors() -> None:
    draws, truth = conjugate(20, 10)
    with pytest.raises(ValueError, match="zero spread"):
        posterior_z_scores(np.zeros((20, 10, 2)), truth)
    with pytest.raises(ValueError, match="needs at least 2 draw"):
        posterior_z_scores(draws[:, :1], truth)
    with pytest.raises(ValueError, match=r"truth is constant across data sets for parameter\(s\) \['theta\[1\]'\]"):
        recovery(draws, np.column_stack([truth[:, 0], np.ones(20)]))


def test_psis_loo_matches_the_closed_form_leave_one_out_predictive():
    # y_i ~ N(mu, 1), mu ~ N(0, 10^2): exact posterior draws, and p(y_i | y_-i) = N(y_i; m_-i, 1 + v_-i)
    from scipy import stats

    from amortbayes.diagnostics import elpd_summary, psis_loo

    rng = np.random.default_rng(0)
    y = rng.normal(1.0, 1.0, 20)
    y[0] = 4.5  # one surprising row
    v = 1 / (1 / 100 + len(y))
    mu = rng.normal(v * y.sum(), np.sqrt(v), 8000)
    ll = stats.norm.logpdf(y[None, :], mu[:, None], 1.0)
    out = psis_loo(ll)
    v_i = 1 / (1 / 100 + len(y) - 1)
    m_i = v_i * (y.sum() - y)
    exact = stats.norm.logpdf(y, m_i, np.sqrt(1 + v_i))
    np.testing.assert_allclose(out["elpd"], exact, atol=0.01)
    totals = elpd_summary(out, ll)
    assert totals["elpd"] == pytest.approx(exact.sum(), abs=0.05)
    # p_loo = lppd - elpd_loo, the lppd from the full-data posterior predictive N(y_i; m, 1 + v)
    lppd = stats.norm.logpdf(y, v * y.sum(), np.sqrt(1 + v)).sum()
    assert totals["p_loo"] == pytest.approx(lppd - exact.sum(), abs=0.05)
    assert totals["max_khat"] < 0.7
