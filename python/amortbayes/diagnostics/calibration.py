"""Posterior z-scores, contraction and coverage of central credible intervals.

For data set ``s`` and parameter ``j`` with posterior mean ``m_sj``, posterior standard
deviation ``sd_sj`` (over the ``L`` draws) and true value ``theta_sj``:

    z_sj           = (m_sj - theta_sj) / sd_sj
    contraction_sj = 1 - sd_sj^2 / prior_sd_j^2.

For an exact posterior ``theta | x ~ N(m, s^2)`` the z-score is ``N(0, 1)`` over the joint
``p(theta, x)``; a mean of z far from 0 means bias, a spread above 1 over-confidence, below 1
under-confidence.  Contraction is 1 when the data pin the parameter down and 0 when the
posterior is as wide as the prior (Schad et al. 2021).

The central ``level`` credible interval of a data set is the ``(1 - level)/2`` to
``(1 + level)/2`` quantile range of its draws.  Its *expected coverage* is the fraction of
data sets whose truth falls inside; for a calibrated posterior it equals ``level`` up to
binomial error ``sqrt(level (1 - level) / S)``.  The calibration error of a parameter is the
median, over a grid of levels, of ``|coverage(level) - level|``.

References:
    Schad, Betancourt & Vasishth (2021). Toward a principled Bayesian workflow in
    cognitive science. Psychological Methods 26(1), 103-126.

    Radev, Schmitt, Pratz, Picchini, Köthe & Bürkner (2023). JANA: Jointly amortized
    neural approximation of complex Bayesian models. UAI 2023.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from amortbayes.diagnostics._validation import (
    as_draws,
    as_draws_truth,
    as_float_array,
    check_finite,
    check_levels,
    names_for,
)

__all__ = ["posterior_z_scores", "posterior_contraction", "expected_coverage", "calibration_error"]

#: Levels used by :func:`expected_coverage` unless others are given.
DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95, 0.99)
#: Grid of levels used by :func:`calibration_error`: 0.01, 0.02, ..., 0.99.
CALIBRATION_GRID: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(1, 100))


def _posterior_sd(d: np.ndarray) -> np.ndarray:
    sd = d.std(axis=1, ddof=1)
    if np.any(sd == 0):
        raise ValueError("draws have zero spread for some data set and parameter: the posterior sd is 0")
    return sd


def posterior_z_scores(draws: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Posterior z-scores ``(mean - truth) / sd``, shape ``(S, D)``.

    Args:
        draws: Posterior draws, shape ``(S, L, D)`` (or ``(S, L)``), ``L >= 2``.
        truth: True values, shape ``(S, D)`` (or ``(S,)``).

    Example:
        >>> draws = np.array([[[0.0], [2.0]]])  # mean 1, sd sqrt(2)
        >>> np.round(posterior_z_scores(draws, np.array([[1.0]])), 3).tolist()
        [[0.0]]
    """
    d, t = as_draws_truth(draws, truth, min_draws=2)
    return (d.mean(axis=1) - t) / _posterior_sd(d)


def posterior_contraction(draws: np.ndarray, prior_sd: float | np.ndarray) -> np.ndarray:
    """Posterior contraction ``1 - var_post / var_prior``, shape ``(S, D)``.

    Args:
        draws: Posterior draws, shape ``(S, L, D)`` (or ``(S, L)``), ``L >= 2``.
        prior_sd: Prior standard deviation, a positive scalar or one per parameter ``(D,)``.

    Example:
        >>> draws = np.array([[[-1.0], [1.0]]])  # posterior variance 2
        >>> posterior_contraction(draws, 2.0).tolist()
        [[0.5]]
    """
    d = as_draws(draws, min_draws=2)
    sd = as_float_array(prior_sd, "prior_sd")
    if sd.ndim == 0:
        sd = np.full(d.shape[2], float(sd))
    if sd.ndim != 1 or sd.shape[0] != d.shape[2]:
        raise ValueError(f"prior_sd must be a scalar or have one entry per parameter ({d.shape[2]}), got shape {sd.shape}")
    check_finite(sd, "prior_sd")
    if np.any(sd <= 0):
        raise ValueError("prior_sd must be positive")
    return 1.0 - d.var(axis=1, ddof=1) / sd**2


def _coverage(d: np.ndarray, t: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Empirical coverage of central intervals, shape ``(len(levels), D)``."""
    q = np.concatenate([(1.0 - levels) / 2.0, (1.0 + levels) / 2.0])
    bounds = np.quantile(d, q, axis=1)  # (2 * n_levels, S, D)
    lower, upper = bounds[: levels.size], bounds[levels.size :]
    inside = (lower <= t[None]) & (t[None] <= upper)
    return inside.mean(axis=1)


def expected_coverage(
    draws: np.ndarray,
    truth: np.ndarray,
    levels: Sequence[float] = DEFAULT_LEVELS,
    parameter_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Fraction of data sets whose central credible interval contains the truth.

    Args:
        draws: Posterior draws, shape ``(S, L, D)`` (or ``(S, L)``), ``L >= 2``.
        truth: True values, shape ``(S, D)`` (or ``(S,)``).
        levels: Credible levels in (0, 1).
        parameter_names: ``D`` names; default ``theta[0], theta[1], ...``.

    Returns:
        Long format, one row per parameter and level: ``parameter``, ``level``, ``coverage``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> truth = rng.normal(size=(400, 1))
        >>> cov = expected_coverage(rng.normal(size=(400, 200, 1)), truth, levels=[0.9])
        >>> bool(abs(cov["coverage"].iloc[0] - 0.9) < 0.05)
        True
    """
    d, t = as_draws_truth(draws, truth, min_draws=2)
    names = names_for(parameter_names, d.shape[2])
    lv = check_levels(levels)
    cov = _coverage(d, t, lv)
    return pd.DataFrame(
        {
            "parameter": np.repeat(names, lv.size),
            "level": np.tile(lv, len(names)),
            "coverage": cov.T.reshape(-1),
        }
    )


def calibration_error(
    draws: np.ndarray,
    truth: np.ndarray,
    levels: Sequence[float] = CALIBRATION_GRID,
    parameter_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Median absolute gap between nominal and empirical coverage, one row per parameter.

    Args:
        draws: Posterior draws, shape ``(S, L, D)`` (or ``(S, L)``), ``L >= 2``.
        truth: True values, shape ``(S, D)`` (or ``(S,)``).
        levels: Grid of credible levels in (0, 1); default ``0.01, 0.02, ..., 0.99``.
        parameter_names: ``D`` names; default ``theta[0], theta[1], ...``.

    Returns:
        Columns ``parameter`` and ``calibration_error`` (0 is perfect, at most 1).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> truth = rng.normal(size=(300, 1))
        >>> good = calibration_error(rng.normal(size=(300, 100, 1)), truth)
        >>> bad = calibration_error(0.3 * rng.normal(size=(300, 100, 1)), truth)
        >>> bool(good["calibration_error"].iloc[0] < 0.05 < bad["calibration_error"].iloc[0])
        True
    """
    d, t = as_draws_truth(draws, truth, min_draws=2)
    names = names_for(parameter_names, d.shape[2])
    lv = check_levels(levels)
    gap = np.abs(_coverage(d, t, lv) - lv[:, None])
    return pd.DataFrame({"parameter": names, "calibration_error": np.median(gap, axis=0)})
