"""Calibration figures: SBC ECDF and histogram, recovery, z-score against contraction, coverage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from amortbayes.diagnostics import (
    expected_coverage,
    posterior_contraction,
    posterior_z_scores,
    recovery,
    sbc_check_ranks,
    sbc_ecdf_bands,
    sbc_ecdf_diff,
    sbc_ranks,
)
from amortbayes.diagnostics._validation import as_draws_truth, check_alpha, names_for
from amortbayes.diagnostics.calibration import CALIBRATION_GRID

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from amortbayes.plots._base import _BAND, _MAIN, PathLike, _finish, _panels


def plot_sbc_ecdf(
    draws: np.ndarray,
    truth: np.ndarray,
    parameter_names: Sequence[str] | None = None,
    alpha: float = 0.01,
    path: PathLike | None = None,
) -> Figure:
    """SBC ECDF difference ``F_hat(z) - z`` per parameter inside its simultaneous band.

    Args:
        draws: Posterior draws, shape ``(S, L, D)`` (or ``(S, L)``).
        truth: True values, shape ``(S, D)`` (or ``(S,)``).
        parameter_names: ``D`` names; default ``theta[0], ...``.
        alpha: Level of the simultaneous ``1 - alpha`` band (see :func:`~amortbayes.diagnostics.sbc_check`).
        path: Where to save a PNG, if given.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> fig = plot_sbc_ecdf(rng.normal(size=(100, 50)), rng.normal(size=100))
    """
    ranks = sbc_ranks(draws, truth)
    n_sims, n_params = ranks.shape
    n_draws = np.shape(draws)[1]
    names = names_for(parameter_names, n_params)
    band = sbc_ecdf_bands(n_sims, n_draws, alpha=alpha)
    diff = sbc_ecdf_diff(ranks, n_draws, band.z)
    passed = sbc_check_ranks(ranks, n_draws, names, alpha)["passed"].to_numpy()
    fig, axes = _panels(n_params)
    for j, ax in enumerate(axes):
        ax.fill_between(band.z, band.lower, band.upper, color=_BAND, alpha=0.5, lw=0, label=f"{1 - alpha:.0%} band")
        ax.axhline(0.0, color="black", lw=0.6)
        ax.plot(band.z, diff[:, j], color=_MAIN if passed[j] else "red", lw=1.2)
        ax.set_title(names[j] + ("" if passed[j] else " (fails SBC)"), color="black" if passed[j] else "red")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("fractional rank z")
        ax.set_ylabel("ECDF difference")
    axes[0].legend(loc="lower right", fontsize="small", frameon=False)
    return _finish(fig, path)


def _default_bins(n_sims: int, n_draws: int) -> int:
    """About ``S / 10`` bins (5 to 50), preferring a divisor of ``L + 1`` (equal-width bins)."""
    target = min(n_draws + 1, max(5, n_sims // 10), 50)
    divisors = [b for b in range(max(1, target // 2), min(n_draws + 1, 2 * target) + 1) if (n_draws + 1) % b == 0]
    return min(divisors, key=lambda b: abs(b - target)) if divisors else target


def plot_sbc_histogram(
    draws: np.ndarray,
    truth: np.ndarray,
    parameter_names: Sequence[str] | None = None,
    bins: int | None = None,
    alpha: float = 0.01,
    path: PathLike | None = None,
) -> Figure:
    """Histogram of SBC ranks with a pointwise ``1 - alpha`` binomial band per bin.

    Bins are unions of whole ranks, so each bin's count is ``Binomial(S, p_b)`` under
    uniformity with ``p_b`` the share of the ``L + 1`` ranks it covers.

    Args:
        draws: Posterior draws, shape ``(S, L, D)`` (or ``(S, L)``).
        truth: True values, shape ``(S, D)`` (or ``(S,)``).
        parameter_names: ``D`` names; default ``theta[0], ...``.
        bins: Number of bins; default about ``S / 10`` (5 to 50), a divisor of ``L + 1`` if one is near.
        alpha: Level of the pointwise band.
        path: Where to save a PNG, if given.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> fig = plot_sbc_histogram(rng.normal(size=(100, 50)), rng.normal(size=100))
    """
    ranks = sbc_ranks(draws, truth)
    n_sims, n_params = ranks.shape
    n_draws = np.shape(draws)[1]
    names = names_for(parameter_names, n_params)
    alpha = check_alpha(alpha)
    if bins is None:
        bins = _default_bins(n_sims, n_draws)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    edges = np.unique(np.round(np.linspace(0, n_draws + 1, min(int(bins), n_draws + 1) + 1))) - 0.5
    share = np.diff(edges) / (n_draws + 1)
    low = stats.binom.ppf(alpha / 2, n_sims, share)
    high = stats.binom.ppf(1 - alpha / 2, n_sims, share)
    fig, axes = _panels(n_params)
    for j, ax in enumerate(axes):
        counts, _ = np.histogram(ranks[:, j], bins=edges)
        ax.fill_between(edges, np.append(low, low[-1]), np.append(high, high[-1]), step="post", color=_BAND, alpha=0.5, lw=0)
        ax.stairs(counts, edges, color=_MAIN, fill=False, lw=1.2)
        ax.set_title(names[j])
        ax.set_xlabel("rank")
        ax.set_ylabel("count")
    return _finish(fig, path)


def plot_recovery(
    draws: np.ndarray,
    truth: np.ndarray,
    parameter_names: Sequence[str] | None = None,
    path: PathLike | None = None,
) -> Figure:
    """Posterior mean ± one posterior sd against the true value, with the identity line.

    Args:
        draws: Posterior draws, shape ``(S, L, D)`` (or ``(S, L)``).
        truth: True values, shape ``(S, D)`` (or ``(S,)``).
        parameter_names: ``D`` names; default ``theta[0], ...``.
        path: Where to save a PNG, if given.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> t = rng.normal(size=(50, 1))
        >>> fig = plot_recovery(t[:, None, :] + 0.1 * rng.normal(size=(50, 20, 1)), t)
    """
    d, t = as_draws_truth(draws, truth)
    names = names_for(parameter_names, d.shape[2])
    table = recovery(d, t, names)
    mean, sd = d.mean(axis=1), d.std(axis=1)
    fig, axes = _panels(d.shape[2])
    for j, ax in enumerate(axes):
        ax.errorbar(t[:, j], mean[:, j], yerr=sd[:, j], fmt="o", ms=2.5, color=_MAIN, ecolor=_MAIN, elinewidth=0.6, alpha=0.6)
        lo = min(t[:, j].min(), (mean[:, j] - sd[:, j]).min())
        hi = max(t[:, j].max(), (mean[:, j] + sd[:, j]).max())
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--")
        ax.text(0.04, 0.96, f"$R^2$ = {table['r2'].iloc[j]:.3f}", transform=ax.transAxes, va="top")
        ax.set_title(names[j])
        ax.set_xlabel("true value")
        ax.set_ylabel("posterior mean ± sd")
    return _finish(fig, path)


def plot_z_score_contraction(
    draws: np.ndarray,
    truth: np.ndarray,
    prior_sd: float | np.ndarray,
    parameter_names: Sequence[str] | None = None,
    path: PathLike | None = None,
) -> Figure:
    """Posterior z-score against posterior contraction, one point per data set.

    Good amortized posteriors sit at contraction near 1 with z-scores mostly within ±2.

    Args:
        draws: Posterior draws, shape ``(S, L, D)`` (or ``(S, L)``), ``L >= 2``.
        truth: True values, shape ``(S, D)`` (or ``(S,)``).
        prior_sd: Prior standard deviation, scalar or ``(D,)``.
        parameter_names: ``D`` names; default ``theta[0], ...``.
        path: Where to save a PNG, if given.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> fig = plot_z_score_contraction(rng.normal(size=(50, 20)), rng.normal(size=50), 1.0)
    """
    z = posterior_z_scores(draws, truth)
    contraction = posterior_contraction(draws, prior_sd)
    names = names_for(parameter_names, z.shape[1])
    fig, axes = _panels(z.shape[1])
    for j, ax in enumerate(axes):
        ax.scatter(contraction[:, j], z[:, j], s=6, color=_MAIN, alpha=0.5, lw=0)
        for level in (-2.0, 0.0, 2.0):
            ax.axhline(level, color="black", lw=0.6, ls="-" if level == 0 else ":")
        ax.set_xlim(min(-0.05, contraction[:, j].min() - 0.05), 1.05)
        ax.set_title(names[j])
        ax.set_xlabel("posterior contraction")
        ax.set_ylabel("posterior z-score")
    return _finish(fig, path)


def plot_coverage(
    draws: np.ndarray,
    truth: np.ndarray,
    levels: Sequence[float] = CALIBRATION_GRID,
    parameter_names: Sequence[str] | None = None,
    alpha: float = 0.05,
    path: PathLike | None = None,
) -> Figure:
    """Empirical coverage of central credible intervals against their nominal level.

    The grey band is the pointwise ``1 - alpha`` binomial range of the coverage of a
    calibrated posterior over ``S`` data sets; points below the diagonal mean over-confidence.

    Args:
        draws: Posterior draws, shape ``(S, L, D)`` (or ``(S, L)``), ``L >= 2``.
        truth: True values, shape ``(S, D)`` (or ``(S,)``).
        levels: Credible levels; default ``0.01, ..., 0.99``.
        parameter_names: ``D`` names; default ``theta[0], ...``.
        alpha: Level of the pointwise binomial band.
        path: Where to save a PNG, if given.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> fig = plot_coverage(rng.normal(size=(100, 50)), rng.normal(size=100))
    """
    d, t = as_draws_truth(draws, truth, min_draws=2)
    names = names_for(parameter_names, d.shape[2])
    alpha = check_alpha(alpha)
    table = expected_coverage(d, t, levels, names)
    grid = np.sort(np.unique(table["level"].to_numpy()))
    n_sims = d.shape[0]
    low = stats.binom.ppf(alpha / 2, n_sims, grid) / n_sims
    high = stats.binom.ppf(1 - alpha / 2, n_sims, grid) / n_sims
    fig, axes = _panels(len(names))
    for name, ax in zip(names, axes):
        rows = table[table["parameter"] == name].sort_values("level")
        ax.fill_between(grid, low, high, color=_BAND, alpha=0.5, lw=0)
        ax.plot([0, 1], [0, 1], color="black", lw=0.8, ls="--")
        ax.plot(rows["level"], rows["coverage"], color=_MAIN, marker="o" if len(rows) < 20 else None, ms=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(name)
        ax.set_xlabel("nominal level")
        ax.set_ylabel("empirical coverage")
    return _finish(fig, path)
