"""Simulation-based calibration: rank statistics, ECDF differences and simultaneous bands.

For ``s = 1..S`` draw ``theta_s ~ p(theta)``, ``x_s ~ p(x | theta_s)`` and ``L`` draws
``theta_s^(1..L)`` from the approximate posterior ``q(theta | x_s)``.  The rank of the truth
among the draws, per parameter,

    r_s = #{ l : theta_s^(l) < theta_s }  in {0, ..., L},

is discrete uniform on ``{0, ..., L}`` for every ``L`` exactly when ``q`` is the true
posterior (Talts et al. 2018).  Deviations have a shape: a posterior that is too narrow
gives a U-shaped rank histogram, one too wide a hump, a biased one a slope.

Instead of a histogram (which depends on a bin choice) the ranks are summarized by the
ECDF of the fractional ranks ``u_s = (r_s + 1) / (L + 1)``, evaluated on the grid
``z_k = k / (L + 1)``, ``k = 1..L`` (thinned to ``n_points`` evenly spaced ``k``):

    F_hat(z_k) = (1/S) #{ s : r_s < k }.

Under uniformity ``S F_hat(z_k) ~ Binomial(S, z_k)`` exactly, and the whole vector
``(S F_hat(z_1), ..., S F_hat(z_K))`` has the law of the cumulated counts of a multinomial
with cell probabilities ``z_1, z_2 - z_1, ..., 1 - z_K``.  Plotting the difference
``F_hat(z) - z`` makes the expected curve the zero line.

A band made of pointwise ``1 - alpha`` binomial intervals would be left somewhere far more
often than ``alpha``.  Following Säilynoja, Bürkner & Vehtari (2022) the band is made
*simultaneous*: for an adjusted pointwise level ``gamma``, every ``z_k`` gets the central
binomial interval ``{c : 2 min(P(X <= c), P(X >= c)) >= gamma}``, ``X ~ Binomial(S, z_k)``,
and ``gamma`` is chosen by Monte Carlo so that an ECDF of truly uniform ranks leaves the
band at *any* ``z_k`` with probability (at most, and close to) ``alpha``: simulate many
uniform rank samples, record the smallest pointwise two-sided tail probability of each,
and take ``gamma`` as their ``alpha`` quantile.  Bands are returned as bounds on the ECDF
*difference* ``F_hat(z) - z`` and are cached, since they depend only on ``(S, L, alpha)``.

:func:`sbc_check` reports per parameter whether the ECDF difference stays inside its band;
each parameter's band is simultaneous over ``z`` at level ``alpha`` (no correction across
parameters is made, so with ``D`` independent parameters about ``D * alpha`` false fails
are expected among them).

References:
    Talts, Betancourt, Simpson, Vehtari & Gelman (2018). Validating Bayesian inference
    algorithms with simulation-based calibration. arXiv:1804.06788.

    Säilynoja, Bürkner & Vehtari (2022). Graphical test for discrete uniformity and its
    applications in goodness-of-fit evaluation and multiple sample comparison.
    Statistics and Computing 32, 32.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from amortbayes.diagnostics._validation import (
    as_draws_truth,
    as_float_array,
    check_alpha,
    names_for,
    positive_int,
)

__all__ = ["SBCBands", "SBCResult", "sbc_ranks", "sbc_ecdf_bands", "sbc_ecdf_diff", "sbc_check_ranks", "sbc_check"]


@dataclass(frozen=True)
class SBCBands:
    """Simultaneous ``1 - alpha`` band for the SBC ECDF difference ``F_hat(z) - z``.

    Attributes:
        z: Evaluation points ``k / (n_draws + 1)``, shape ``(K,)``, inside (0, 1).
        lower: Lower bound on ``F_hat(z) - z`` at each ``z``, shape ``(K,)``.
        upper: Upper bound on ``F_hat(z) - z`` at each ``z``, shape ``(K,)``.
        gamma: The adjusted pointwise level that makes the band simultaneous.
        alpha: Probability that uniform ranks leave the band anywhere.
        n_sims: Number of ranks ``S`` the band is for.
        n_draws: Number of posterior draws ``L`` per data set (ranks in ``0..L``).
    """

    z: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    gamma: float
    alpha: float
    n_sims: int
    n_draws: int


def sbc_ranks(draws: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Rank of each true value among its posterior draws: ``#{draws < truth}``.

    Args:
        draws: Posterior draws, shape ``(S, L, D)`` (or ``(S, L)`` for one parameter).
        truth: True parameter values, shape ``(S, D)`` (or ``(S,)``).

    Returns:
        Integer ranks in ``0..L``, shape ``(S, D)``.

    Example:
        >>> draws = np.array([[[0.1], [0.5], [0.9]]])  # S=1, L=3, D=1
        >>> sbc_ranks(draws, np.array([[0.6]])).tolist()
        [[2]]
    """
    d, t = as_draws_truth(draws, truth)
    return np.sum(d < t[:, None, :], axis=1).astype(np.int64)


def _grid(n_sims: int, n_draws: int, n_points: int | None) -> np.ndarray:
    """Integer grid ``k`` in ``1..L`` at which the ECDF is evaluated."""
    if n_points is None:
        n_points = min(n_draws, n_sims, 200)
    n_points = min(n_points, n_draws)
    if n_points == n_draws:
        return np.arange(1, n_draws + 1)
    k = np.round(np.arange(1, n_points + 1) * (n_draws + 1) / (n_points + 1)).astype(np.int64)
    return np.unique(np.clip(k, 1, n_draws))


def _tail_table(n_sims: int, z: np.ndarray) -> np.ndarray:
    """Pointwise two-sided tail probability ``2 min(P(X <= c), P(X >= c))``, shape ``(K, S + 1)``."""
    c = np.arange(n_sims + 1)[None, :]
    cdf = stats.binom.cdf(c, n_sims, z[:, None])
    sf_incl = stats.binom.sf(c - 1, n_sims, z[:, None])
    return np.minimum(1.0, 2.0 * np.minimum(cdf, sf_incl))


@functools.lru_cache(maxsize=128)
def _bands(n_sims: int, n_draws: int, alpha: float, n_points: int | None, n_simulations: int, seed: int) -> SBCBands:
    k = _grid(n_sims, n_draws, n_points)
    z = k / (n_draws + 1)
    table = _tail_table(n_sims, z)
    rows = np.arange(z.size)

    # Uniform ranks, cumulated on the grid: multinomial cell counts between grid points.
    rng = np.random.default_rng(seed)
    cells = np.diff(np.concatenate([[0.0], z, [1.0]]))
    counts = np.cumsum(rng.multinomial(n_sims, cells, size=n_simulations)[:, :-1], axis=1)
    smallest = table[rows[None, :], counts].min(axis=1)
    # Largest gamma with #{smallest < gamma} <= alpha * n_simulations.
    gamma = float(np.sort(smallest)[int(np.floor(alpha * n_simulations))])

    inside = table >= gamma
    lower_count = np.argmax(inside, axis=1)
    upper_count = n_sims - np.argmax(inside[:, ::-1], axis=1)
    lower, upper = lower_count / n_sims - z, upper_count / n_sims - z
    for array in (z, lower, upper):
        array.setflags(write=False)
    return SBCBands(z=z, lower=lower, upper=upper, gamma=gamma, alpha=alpha, n_sims=n_sims, n_draws=n_draws)


def sbc_ecdf_bands(
    n_sims: int,
    n_draws: int,
    alpha: float = 0.01,
    n_points: int | None = None,
    n_simulations: int = 5000,
    seed: int = 0,
) -> SBCBands:
    """Simultaneous ``1 - alpha`` band for the ECDF difference of ``n_sims`` SBC ranks.

    Args:
        n_sims: Number of simulated data sets ``S`` (ranks per parameter).
        n_draws: Posterior draws per data set ``L``; ranks take values ``0..L``.
        alpha: Probability that the ECDF difference of uniform ranks leaves the band at any
            evaluation point.
        n_points: Number of evaluation points ``z``; default ``min(L, S, 200)``.  At most ``L``.
        n_simulations: Monte Carlo samples of uniform ranks used to find ``gamma``.
        seed: Seed of the Monte Carlo; the result is deterministic given all arguments.

    Returns:
        An :class:`SBCBands` with bounds on ``F_hat(z) - z`` (read-only arrays, cached).

    Example:
        >>> band = sbc_ecdf_bands(100, 50, alpha=0.05)
        >>> band.z.shape == band.lower.shape == band.upper.shape
        True
        >>> bool(np.all(band.lower <= 0) and np.all(band.upper >= 0))
        True
    """
    n_sims = positive_int(n_sims, "n_sims")
    n_draws = positive_int(n_draws, "n_draws")
    alpha = check_alpha(alpha)
    if n_points is not None:
        n_points = positive_int(n_points, "n_points")
    n_simulations = positive_int(n_simulations, "n_simulations", minimum=100)
    seed = positive_int(seed, "seed", minimum=0)
    return _bands(n_sims, n_draws, alpha, n_points, n_simulations, seed)


def _as_ranks(ranks: np.ndarray, n_draws: int) -> np.ndarray:
    """Ranks as an integer ``(S, D)`` array with values in ``0..n_draws``."""
    r = as_float_array(ranks, "ranks")
    if r.ndim == 1:
        r = r[:, None]
    if r.ndim != 2 or r.shape[0] < 1 or r.shape[1] < 1:
        raise ValueError(f"ranks must have shape (n_sims,) or (n_sims, n_params), got shape {r.shape}")
    if not np.all(np.isfinite(r)) or np.any(r != np.round(r)):
        raise ValueError("ranks must be whole numbers (counts of draws below the truth)")
    if np.any(r < 0) or np.any(r > n_draws):
        raise ValueError(f"ranks must lie in 0..n_draws = 0..{n_draws}, got values in {r.min():g}..{r.max():g}")
    return r.astype(np.int64)


def sbc_ecdf_diff(ranks: np.ndarray, n_draws: int, z: np.ndarray) -> np.ndarray:
    """ECDF difference ``F_hat(z) - z`` of fractional ranks ``(r + 1) / (L + 1)``.

    ``F_hat(z) = (1/S) #{s : (r_s + 1) / (L + 1) <= z}``; on the grid ``z = k / (L + 1)``
    returned by :func:`sbc_ecdf_bands` this is ``(1/S) #{s : r_s < k}``, whose expectation
    under uniform ranks is exactly ``z``.

    Args:
        ranks: Integer ranks in ``0..n_draws``, shape ``(S,)`` or ``(S, D)``.
        n_draws: Number of posterior draws ``L`` the ranks were computed from.
        z: Evaluation points in [0, 1], shape ``(K,)``.

    Returns:
        Shape ``(K,)`` for 1-D ranks, else ``(K, D)``.

    Example:
        >>> sbc_ecdf_diff(np.array([0, 1, 2, 3]), 3, np.array([0.25, 0.5, 0.75])).tolist()
        [0.0, 0.0, 0.0]
    """
    n_draws = positive_int(n_draws, "n_draws")
    one_d = np.ndim(ranks) == 1
    r = _as_ranks(ranks, n_draws)
    zz = as_float_array(z, "z").reshape(-1)
    if np.any(~np.isfinite(zz)) or np.any(zz < 0) or np.any(zz > 1):
        raise ValueError("z must be finite evaluation points in [0, 1]")
    k = np.floor(zz * (n_draws + 1) + 1e-9)
    sorted_r = np.sort(r, axis=0)
    below = np.stack([np.searchsorted(sorted_r[:, j], k, side="left") for j in range(r.shape[1])], axis=1)
    diff = below / r.shape[0] - zz[:, None]
    return diff[:, 0] if one_d else diff


def sbc_check_ranks(
    ranks: np.ndarray,
    n_draws: int,
    parameter_names: Sequence[str] | None = None,
    alpha: float = 0.01,
    *,
    n_points: int | None = None,
) -> pd.DataFrame:
    """SBC uniformity test from precomputed ranks (see :func:`sbc_check`).

    Args:
        ranks: Integer ranks in ``0..n_draws``, shape ``(S,)`` or ``(S, D)``.
        n_draws: Number of posterior draws ``L`` per data set.
        parameter_names: ``D`` names; default ``theta[0], theta[1], ...``.
        alpha: Level of each parameter's simultaneous band.
        n_points: Evaluation points of the band (see :func:`sbc_ecdf_bands`).

    Returns:
        One row per parameter: ``parameter``, ``max_abs_ecdf_diff``, ``passed``,
        ``n_sims``, ``n_draws``.

    Example:
        >>> ranks = np.random.default_rng(1).integers(0, 51, size=(200, 2))
        >>> sbc_check_ranks(ranks, 50)["passed"].tolist()
        [True, True]
    """
    n_draws = positive_int(n_draws, "n_draws")
    r = _as_ranks(ranks, n_draws)
    names = names_for(parameter_names, r.shape[1])
    band = sbc_ecdf_bands(r.shape[0], n_draws, alpha=alpha, n_points=n_points)
    diff = sbc_ecdf_diff(r, n_draws, band.z)
    inside = (diff >= band.lower[:, None]) & (diff <= band.upper[:, None])
    return pd.DataFrame(
        {
            "parameter": names,
            "max_abs_ecdf_diff": np.abs(diff).max(axis=0),
            "passed": inside.all(axis=0),
            "n_sims": r.shape[0],
            "n_draws": n_draws,
        }
    )


def sbc_check(
    draws: np.ndarray,
    truth: np.ndarray,
    parameter_names: Sequence[str] | None = None,
    alpha: float = 0.01,
    *,
    n_points: int | None = None,
) -> pd.DataFrame:
    """Simulation-based calibration check, one row per parameter.

    A parameter passes when the ECDF difference of its ranks stays inside the simultaneous
    ``1 - alpha`` band of :func:`sbc_ecdf_bands` at every evaluation point.  Each band is
    simultaneous over ``z`` at level ``alpha`` for its own parameter: a calibrated posterior
    fails a given parameter with probability about ``alpha``.

    Args:
        draws: Posterior draws, shape ``(S, L, D)`` (or ``(S, L)``).
        truth: True values the data sets were simulated from, shape ``(S, D)`` (or ``(S,)``).
        parameter_names: ``D`` names; default ``theta[0], theta[1], ...``.
        alpha: Level of each parameter's simultaneous band.
        n_points: Evaluation points of the band (see :func:`sbc_ecdf_bands`).

    Returns:
        Columns ``parameter``, ``max_abs_ecdf_diff`` (largest ``|F_hat(z) - z|`` on the
        band's grid), ``passed`` (bool), ``n_sims``, ``n_draws``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> truth = rng.normal(size=(200, 1))
        >>> exact = rng.normal(size=(200, 100, 1))  # prior = posterior when data carry no information
        >>> bool(sbc_check(exact, truth)["passed"].all())
        True
        >>> bool(sbc_check(0.3 * exact, truth)["passed"].any())  # far too narrow
        False
    """
    ranks = sbc_ranks(draws, truth)
    return sbc_check_ranks(ranks, np.shape(draws)[1], parameter_names, alpha, n_points=n_points)


@dataclass
class SBCResult:
    """The result of an SBC run: the :func:`sbc_check` table with the draws and truths behind it.

    Made by a formula fit's ``sbc()`` (global parameters and one group's effects per data
    set) and by :func:`amortbayes.amortizers.joint.joint_sbc`.

    Attributes:
        table: one row per parameter: ``parameter``, ``max_abs_ecdf_diff``, ``passed`` (inside
            the simultaneous band), ``n_sims``, ``n_draws`` (a formula fit's adds ``level``).
        draws: ``(sims, draws, D)`` posterior draws of the D checked parameters.
        truth: ``(sims, D)`` the values the data sets were simulated from.
        alpha: level of each simultaneous band.
        dropped: simulated data sets left out because the network gave non-finite draws for
            them (data far in the prior's tails, beyond every training simulation).
    """

    table: pd.DataFrame
    draws: np.ndarray
    truth: np.ndarray
    alpha: float
    dropped: int = 0

    @property
    def passed(self) -> bool:
        """Every parameter inside its band, and at most 2 % of the data sets dropped."""
        return bool(self.table["passed"].all()) and self.dropped <= 0.02 * (len(self.truth) + self.dropped)

    def plot(self, path: Any = None):
        """ECDF differences inside their simultaneous bands, one panel per parameter (``plot_sbc_ecdf``)."""
        from amortbayes.plots import plot_sbc_ecdf

        return plot_sbc_ecdf(self.draws, self.truth, list(self.table["parameter"]), self.alpha, path)
