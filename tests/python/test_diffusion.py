"""Tests of the Wiener diffusion simulator against closed-form first-passage results."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from amortbayes.models import diffusion
from amortbayes.models.diffusion import (
    conditional_mean_decision_time,
    mean_decision_time,
    simulate_diffusion,
    upper_probability,
    wiener_log_density,
)

torch.set_num_threads(1)

TAU = 0.3
GRID = list(itertools.product([-1.0, 0.0, 0.5, 2.0], [0.8, 1.5, 2.5], [0.3, 0.5, 0.7]))
N_TRIALS = 100_000


def _f64(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def _density(t: np.ndarray, choice: float, v: float, a: float, beta: float) -> np.ndarray:
    """First-passage density of the decision time ``t`` (numpy in and out, float64)."""
    rt = torch.as_tensor(np.asarray(t, dtype=float) + TAU)
    return torch.exp(wiener_log_density(rt, choice, v, a, beta, TAU)).numpy()


def _tail_time(v: float, a: float) -> float:
    """A time beyond which the first-passage density has mass far below 1e-10."""
    return 30.0 / (0.5 * v * v + math.pi**2 / (2 * a * a))


@pytest.fixture(scope="module")
def grid_draws() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One simulation of N_TRIALS trials for every grid setting: params (S, 3), rt and choice (S, N)."""
    params = torch.tensor(GRID, dtype=torch.float64)
    shape = (len(GRID), N_TRIALS)
    v, a, beta = (params[:, i : i + 1].expand(shape) for i in range(3))
    rt, choice = simulate_diffusion(v, a, beta, _f64(TAU), generator=torch.Generator().manual_seed(2024))
    return params, rt, choice


def test_outputs_are_valid(grid_draws) -> None:
    params, rt, choice = grid_draws
    assert rt.shape == choice.shape == (len(GRID), N_TRIALS)
    assert rt.dtype == choice.dtype == torch.float64
    assert bool(torch.isfinite(rt).all())
    assert bool((rt > TAU).all())
    assert bool(((choice == 0) | (choice == 1)).all())


def test_upper_probability_matches_simulation(grid_draws) -> None:
    params, rt, choice = grid_draws
    p = upper_probability(params[:, 0], params[:, 1], params[:, 2])
    se = torch.sqrt(p * (1 - p) / N_TRIALS)
    z = (choice.mean(dim=1) - p) / se
    assert float(z.abs().max()) < 4.0, z


def test_mean_decision_times_match_simulation(grid_draws) -> None:
    params, rt, choice = grid_draws
    v, a, beta = params.T
    decision = rt - TAU
    z = (decision.mean(dim=1) - mean_decision_time(v, a, beta)) / (decision.std(dim=1) / math.sqrt(N_TRIALS))
    assert float(z.abs().max()) < 4.0, z
    # conditional on the boundary, where it has enough trials
    upper, lower = conditional_mean_decision_time(v, a, beta)
    for side, expected in ((1.0, upper), (0.0, lower)):
        for s in range(len(GRID)):
            times = decision[s][choice[s] == side]
            if times.numel() < 1000:
                continue
            zs = (times.mean() - expected[s]) / (times.std() / math.sqrt(times.numel()))
            assert abs(float(zs)) < 4.0, (GRID[s], side, float(zs))


def test_closed_forms_agree_with_their_definitions() -> None:
    v = torch.tensor([-3.0, -1.0, -1e-3, 0.5, 2.0, 7.0], dtype=torch.float64)
    for a, beta in [(0.8, 0.3), (1.5, 0.5), (2.5, 0.9)]:
        z = beta * a
        p = upper_probability(v, a, beta)
        direct = (1 - torch.exp(-2 * v * z)) / (1 - torch.exp(-2 * v * a))
        torch.testing.assert_close(p, direct, rtol=1e-12, atol=0)
        # optional stopping: E[T] = (a P(upper) - z) / v
        torch.testing.assert_close(mean_decision_time(v, a, beta), (a * p - z) / v, rtol=1e-9, atol=0)
        # symmetry: reflect drift and starting point
        torch.testing.assert_close(p + upper_probability(-v, a, 1 - beta), torch.ones_like(p), rtol=0, atol=1e-14)
        up, low = conditional_mean_decision_time(v, a, beta)
        up_r, low_r = conditional_mean_decision_time(-v, a, 1 - beta)
        torch.testing.assert_close(up, low_r, rtol=1e-12, atol=0)
        torch.testing.assert_close(low, up_r, rtol=1e-12, atol=0)
        # v -> 0 limits are continuous
        torch.testing.assert_close(upper_probability(_f64(1e-9), a, beta), _f64(beta), rtol=1e-8, atol=0)
        torch.testing.assert_close(mean_decision_time(_f64(1e-9), a, beta), _f64(z * (a - z)), rtol=1e-8, atol=0)
        torch.testing.assert_close(mean_decision_time(_f64(0.0), a, beta), _f64(z * (a - z)), rtol=1e-14, atol=0)
        for eps in (1e-5, 1e-3):  # the small-v expansion and the exact branch meet smoothly
            pe = upper_probability(_f64(eps), a, beta)
            torch.testing.assert_close(mean_decision_time(_f64(eps), a, beta), (a * pe - z) / eps, rtol=1e-6, atol=0)
        up0, low0 = conditional_mean_decision_time(_f64(0.0), a, beta)
        assert math.isclose(float(up0), (a * a - z * z) / 3, rel_tol=1e-12)
        assert math.isclose(float(low0), (a * a - (a - z) ** 2) / 3, rel_tol=1e-12)
    # no overflow for extreme drifts
    extreme = upper_probability(torch.tensor([-500.0, 500.0], dtype=torch.float64), 2.0, 0.5)
    assert torch.equal(extreme, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert bool(torch.isfinite(mean_decision_time(torch.tensor([-500.0, 500.0]), 2.0, 0.5)).all())


def _integrate(f, end: float, panels: int = 400, order: int = 20) -> float:
    """Composite Gauss-Legendre quadrature of a vectorized ``f`` over ``[0, end]``."""
    nodes, weights = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(0.0, end, panels + 1)
    half = 0.5 * np.diff(edges)[:, None]
    t = (0.5 * (edges[:-1] + edges[1:]))[:, None] + half * nodes[None, :]
    return float(np.sum(half * weights[None, :] * f(t)))


@pytest.mark.parametrize("v, a, beta", [(-1.0, 0.8, 0.3), (0.0, 1.5, 0.5), (0.5, 2.5, 0.7), (2.0, 1.5, 0.3), (4.0, 2.0, 0.1)])
def test_density_integrates_to_boundary_probability_and_mean(v: float, a: float, beta: float) -> None:
    p_upper = float(upper_probability(_f64(v), a, beta))
    up, low = (float(m) for m in conditional_mean_decision_time(_f64(v), a, beta))
    end = _tail_time(v, a)
    for choice, prob, cond_mean in ((1.0, p_upper, up), (0.0, 1 - p_upper, low)):
        mass = _integrate(lambda t: _density(t, choice, v, a, beta), end)
        first = _integrate(lambda t: t * _density(t, choice, v, a, beta), end)
        assert abs(mass - prob) < 1e-4
        assert abs(mass - prob) < 1e-10  # in fact to quadrature accuracy
        assert math.isclose(first, prob * cond_mean, rel_tol=1e-9, abs_tol=1e-12)


def test_density_matches_high_precision_series() -> None:
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60

    def reference(t: float, upper: bool, v: float, a: float, w: float) -> float:
        t, v, a, w = (mpmath.mpf(x) for x in (t, v, a, w))
        if upper:
            v, w = -v, 1 - w
        u = t / a**2
        s = mpmath.fsum((w + 2 * k) * mpmath.exp(-((w + 2 * k) ** 2) / (2 * u)) for k in range(-40, 41))
        return float(mpmath.log(s / mpmath.sqrt(2 * mpmath.pi * u**3)) - 2 * mpmath.log(a) - v * a * w - v * v * t / 2)

    cases = list(
        itertools.product([1e-3, 0.03, 0.3, 0.9, 2.0, 8.0], [False, True], [-2.0, 0.7], [0.8, 2.5], [1e-6, 0.02, 0.5, 0.9])
    )
    t, up, v, a, w = (torch.tensor(c, dtype=torch.float64) for c in zip(*cases))
    mine = wiener_log_density(t + TAU, up.to(torch.float64), v, a, w, _f64(TAU)) - 0.0
    ref = torch.tensor([reference(*c) for c in cases], dtype=torch.float64)
    # log densities from about -3000 to +5: relative error of the density itself below 1e-9
    assert float((mine - ref).abs().max()) < 1e-9


def test_density_gradients_match_finite_differences() -> None:
    # the two series and the two pairings of the small-time one are evaluated on separate
    # subsets of the trials and scattered back; gradients must flow through all four paths
    rt = torch.tensor([0.35, 0.45, 0.8, 2.5, 4.0, 0.9], dtype=torch.float64)  # u below and above the switch
    choice = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    params = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in (
        [0.5, -1.0, 1.0, 0.2, -0.3, 2.0], [1.2, 0.9, 1.5, 1.0, 1.1, 2.0],
        [0.3, 0.6, 0.5, 0.45, 0.8, 0.2], [0.2, 0.25, 0.3, 0.1, 0.15, 0.2])]
    assert torch.autograd.gradcheck(lambda v, a, b, t: wiener_log_density(rt, choice, v, a, b, t), params)


def test_density_checks_each_parameter_value_not_each_trial() -> None:
    # one value per group broadcast over its trials gives the densities of the expanded call
    rt = torch.tensor([[0.5, 0.9, 1.7], [0.6, 0.4, 2.2]], dtype=torch.float64)
    choice = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    v, a, b, t = (torch.tensor([[x], [y]], dtype=torch.float64) for x, y in ((0.7, -0.4), (1.3, 0.9), (0.4, 0.6), (0.2, 0.3)))
    expanded = wiener_log_density(rt, choice, *(p.expand(2, 3) for p in (v, a, b, t)))
    assert torch.equal(wiener_log_density(rt, choice, v, a, b, t), expanded)
    with pytest.raises(ValueError, match="beta must lie strictly inside"):
        wiener_log_density(rt, choice, v, a, torch.tensor([[0.5], [1.0]], dtype=torch.float64), t)


def test_small_and_large_time_series_agree() -> None:
    # both series converge for moderate u; with their default truncations they meet at u = 1
    u = torch.linspace(0.2, 1.5, 27, dtype=torch.float64)[:, None]
    beta = torch.tensor([1e-9, 1e-6, 0.05, 0.3, 0.5, 0.8, 0.999], dtype=torch.float64)[None, :]
    u, beta = torch.broadcast_tensors(u, beta)
    for w, wc in ((beta, 1.0 - beta), (1.0 - beta, beta)):
        small = diffusion._log_fpt_small(u, w, wc, terms=12)
        large = diffusion._log_fpt_large(u, w, wc, terms=40)
        assert float((small - large).abs().max()) < 1e-10
        at_switch = diffusion._log_fpt_small(u * 0 + 1.0, w, wc) - diffusion._log_fpt_large(u * 0 + 1.0, w, wc)
        assert float(at_switch.abs().max()) < 1e-12


@pytest.mark.parametrize(
    "v, a, beta",
    [(0.0, 1.5, 0.5), (4.0, 3.0, 0.5), (1.0, 1.5, 0.3), (-1.0, 0.8, 0.7), (2.0, 2.5, 0.15), (-0.5, 2.0, 0.9)],
)
def test_simulated_times_follow_the_density(v: float, a: float, beta: float) -> None:
    gen = torch.Generator().manual_seed(7)
    n = 100_000
    rt, choice = simulate_diffusion(torch.full((n,), v, dtype=torch.float64), a, beta, TAU, generator=gen)
    grid = np.linspace(0.0, _tail_time(v, a), 400_001)
    p_upper = float(upper_probability(v, a, beta))
    for side, prob in ((1.0, p_upper), (0.0, 1 - p_upper)):
        sample = (rt[choice == side] - TAU).numpy()
        if sample.size < 200:
            continue
        cdf = integrate.cumulative_trapezoid(_density(grid, side, v, a, beta), grid, initial=0.0) / prob
        assert abs(cdf[-1] - 1) < 1e-6
        result = stats.kstest(sample, lambda x: np.interp(x, grid, cdf))
        assert result.pvalue > 1e-3, (side, result)


def test_walk_handles_extreme_settings() -> None:
    gen = torch.Generator().manual_seed(3)
    v = torch.tensor([60.0, -60.0, 0.0, 3.0, -0.2], dtype=torch.float64)[:, None].expand(5, 20_000)
    a = torch.tensor([4.0, 4.0, 0.05, 1.0, 6.0], dtype=torch.float64)[:, None]
    beta = torch.tensor([0.5, 0.9, 1e-6, 0.999999, 0.5], dtype=torch.float64)[:, None]
    rt, choice = simulate_diffusion(v, a, beta, 0.0, generator=gen)
    assert bool(torch.isfinite(rt).all()) and bool((rt > 0).all())
    p = upper_probability(v[:, 0], a[:, 0], beta[:, 0])
    se = torch.sqrt(p * (1 - p) / 20_000).clamp(min=1e-3)
    assert float(((choice.mean(dim=1) - p) / se).abs().max()) < 4.0
    # means only where they are not carried by events rarer than 1 in 20,000 (a start
    # 1e-6 from a boundary owes a third of its mean time to the lower boundary, P = 1e-6)
    m = mean_decision_time(v[:, 0], a[:, 0], beta[:, 0])
    sd = rt.std(dim=1) / math.sqrt(20_000)
    moderate = torch.tensor([True, True, False, False, True])
    assert float(((rt.mean(dim=1) - m) / sd)[moderate].abs().max()) < 4.0


def test_jstar_sampler_moments() -> None:
    # exit time from (-1, 1) with drift z: mean tanh(z) / z
    gen = torch.Generator().manual_seed(11)
    z = torch.tensor([0.0, 0.9, 1.6, 4.0, 25.0], dtype=torch.float64)[:, None].expand(5, 40_000)
    draws = diffusion._sample_jstar(z.reshape(-1), gen).reshape(5, -1)
    expected = torch.where(z[:, 0] > 0, torch.tanh(z[:, 0]) / z[:, 0].clamp(min=1e-12), torch.ones(5, dtype=torch.float64))
    se = draws.std(dim=1) / math.sqrt(40_000)
    assert float(((draws.mean(dim=1) - expected) / se).abs().max()) < 4.0


def test_reproducible_shapes_and_dtypes() -> None:
    b, j, n = 3, 4, 50
    v = torch.randn(b, 1, 1, generator=torch.Generator().manual_seed(0))
    a = torch.full((1, j, 1), 1.2)
    beta = torch.full((1, 1, n), 0.4)
    draws = [simulate_diffusion(v, a, beta, torch.tensor(0.25), generator=torch.Generator().manual_seed(s)) for s in (5, 5, 6)]
    (rt1, c1), (rt2, c2), (rt3, _) = draws
    assert rt1.shape == c1.shape == (b, j, n)
    assert rt1.dtype == c1.dtype == torch.float32
    assert torch.equal(rt1, rt2) and torch.equal(c1, c2)
    assert not torch.equal(rt1, rt3)
    assert bool((rt1 > 0.25).all())
    rt64, _ = simulate_diffusion(v.double(), 1.2, 0.4, 0.25, generator=torch.Generator().manual_seed(5))
    assert rt64.dtype == torch.float64 and rt64.shape == (b, 1, 1)
    rt_m, _ = simulate_diffusion(v, a, beta, 0.25, generator=torch.Generator().manual_seed(5), method="intervals")
    assert torch.equal(rt_m, rt1)


def test_log_density_edge_cases() -> None:
    rt = torch.tensor([0.1, 0.25, 0.31, 1.0, 50.0])
    lp = wiener_log_density(rt, torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0]), 1.0, 1.5, 0.5, 0.3)
    assert lp.dtype == torch.float32
    assert lp[0] == -math.inf and lp[1] == -math.inf
    assert bool(torch.isfinite(lp[2:]).all())
    # shape broadcasting: (N,) rts against (B, 1) drifts
    lp2 = wiener_log_density(rt[None, 2:].double(), 1.0, torch.tensor([[0.5], [1.0]], dtype=torch.float64), 1.5, 0.5, 0.3)
    assert lp2.shape == (2, 3) and lp2.dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(a=0.0), "boundary separation a must be > 0"),
        (dict(a=-1.0), "boundary separation a must be > 0"),
        (dict(beta=0.0), r"beta must lie strictly inside \(0, 1\)"),
        (dict(beta=1.0), r"beta must lie strictly inside \(0, 1\)"),
        (dict(tau=-0.1), "non-decision time tau must be >= 0"),
        (dict(v=math.nan), "v must be finite"),
        (dict(a=math.inf), "a must be finite"),
        (dict(method="euler"), "unknown method 'euler'"),
    ],
)
def test_bad_inputs_raise(kwargs: dict, message: str) -> None:
    args = dict(v=torch.tensor([1.0, 0.5]), a=1.0, beta=0.5, tau=0.2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        simulate_diffusion(**args, generator=torch.Generator().manual_seed(0))


def test_bad_inputs_raise_in_closed_forms_and_density() -> None:
    with pytest.raises(ValueError, match="beta must lie strictly inside"):
        upper_probability(1.0, 1.0, torch.tensor([0.5, 1.2]))
    with pytest.raises(ValueError, match="boundary separation a must be > 0"):
        mean_decision_time(1.0, -2.0, 0.5)
    with pytest.raises(ValueError, match="choice must be 1.0"):
        wiener_log_density(torch.tensor([0.5]), torch.tensor([2.0]), 1.0, 1.0, 0.5, 0.2)
    with pytest.raises(ValueError, match="rt must be finite"):
        wiener_log_density(torch.tensor([math.nan]), 1.0, 1.0, 1.0, 0.5, 0.2)
    with pytest.raises(ValueError, match="do not broadcast"):
        simulate_diffusion(torch.zeros(3), torch.ones(4), 0.5, 0.2)
