"""Importance-weight diagnostics against weights whose tail shape is known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from amortbayes.diagnostics import effective_sample_size, importance_diagnostics, pareto_khat, pareto_smooth, tempering_exponent


@pytest.mark.parametrize("shape", [0.3, 0.6, 1.0])
def test_pareto_khat_recovers_the_tail_shape(shape):
    # w = U^(-k) has a generalized Pareto tail of shape exactly k
    rng = np.random.default_rng(int(10 * shape))
    estimates = [pareto_khat(-shape * np.log(rng.uniform(size=4000))) for _ in range(20)]
    assert abs(np.mean(estimates) - shape) < 0.08
    assert np.std(estimates) < 0.15


def test_pareto_khat_separates_good_from_bad_proposals():
    rng = np.random.default_rng(1)
    # log weights of a Gaussian proposal against a Gaussian target: log w is quadratic in the draw.
    # A proposal wider than the target gives bounded weights; a narrower one a heavy tail.
    z = rng.standard_normal(4000)
    wide = -0.5 * (z * 1.5) ** 2 + 0.5 * z**2  # q = N(0, 1.5^2), p = N(0, 1): w bounded
    narrow = -0.5 * (z * 0.5) ** 2 + 0.5 * z**2  # q = N(0, 0.5^2), p = N(0, 1): k = 0.75 in theory
    assert pareto_khat(wide) < 0.5
    assert pareto_khat(narrow) > 0.7
    # the offset of the log weights is irrelevant
    assert pareto_khat(narrow + 1000.0) == pytest.approx(pareto_khat(narrow))


def test_effective_sample_size():
    d = importance_diagnostics(np.zeros(500))
    assert d["ess"] == pytest.approx(500) and d["ess_fraction"] == pytest.approx(1.0)
    d = importance_diagnostics(np.r_[0.0, np.full(99, -50.0)])
    assert d["ess"] == pytest.approx(1.0, abs=1e-6) and d["pareto_k"] > 0.7
    with pytest.raises(ValueError, match="at least 10"):
        pareto_khat(np.zeros(5))


def test_pareto_smoothing_tames_the_largest_weights_only():
    rng = np.random.default_rng(3)
    lw = -0.9 * np.log(rng.uniform(size=4000))  # heavy tail, k = 0.9
    smoothed, k = pareto_smooth(lw)
    assert 0.7 < k < 1.1
    tail = int(np.ceil(min(0.2 * 4000, 3 * np.sqrt(4000))))
    order = np.argsort(lw)
    np.testing.assert_array_equal(smoothed[order[:-tail]], lw[order[:-tail]])  # the bulk is untouched
    assert np.all(np.diff(smoothed[order[-tail:]]) >= 0)  # the tail keeps its order
    assert smoothed.max() <= lw.max() + 1e-12  # capped at the largest raw weight


def test_tempering_exponent_keeps_the_asked_effective_sample_size():
    # Gaussian proposal N(0, 1), target N(3, 0.5^2): weights far too uneven to describe the target
    rng = np.random.default_rng(2)
    z = rng.standard_normal(4000)
    log_w = -0.5 * ((z - 3) / 0.5) ** 2 + 0.5 * z**2
    assert effective_sample_size(log_w) < 100
    beta = tempering_exponent(log_w, 400)
    assert 0 < beta < 1 and effective_sample_size(beta * log_w) == pytest.approx(400, rel=1e-3)
    # the tempered draws describe q^(1 - beta) p^beta, a Gaussian between the two (exact mean here)
    p = np.exp(beta * log_w - (beta * log_w).max())
    prec = (1 - beta) + beta / 0.25
    assert np.sum(p * z) / p.sum() == pytest.approx(beta * 3 / 0.25 / prec, abs=0.1)
    assert tempering_exponent(log_w, 1.0) == 1.0  # already enough
    with_impossible = np.append(log_w, -np.inf)
    b2 = tempering_exponent(with_impossible, 400)
    assert b2 == pytest.approx(beta, rel=1e-6) and np.isneginf(b2 * with_impossible[-1])
