"""Importance-weight diagnostics: Pareto k-hat of the weights' upper tail and the effective sample size.

When draws from an amortized posterior ``q`` are reweighted towards the exact posterior
``p`` (``w = p / q`` up to a constant), the estimate is only as good as the weights'
right tail.  Fitting a generalized Pareto distribution to the largest weights gives its
shape ``k``: below 0.5 the weights have finite variance, below 0.7 the importance
estimates are reliable in practice, and above 0.7 they are not (the proposal ``q`` misses
mass that ``p`` has; Vehtari et al. 2024).  The shape is estimated with the profile
empirical-Bayes method of Zhang & Stephens (2009), shrunk slightly towards 0.5 as in
Vehtari et al.; the tail holds the ``min(S / 5, 3 sqrt(S))`` largest of ``S`` weights.
:func:`pareto_smooth` replaces those by the fitted tail's expected order statistics (PSIS).

References:
    Zhang & Stephens (2009). A new and efficient estimation method for the generalized
    Pareto distribution. Technometrics 51(3), 316-325.
    Vehtari, Simpson, Gelman, Yao & Gabry (2024). Pareto smoothed importance sampling.
    JMLR 25(72).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from amortbayes.diagnostics._validation import as_float_array

RELIABLE_PARETO_K = 0.7  # above it, importance estimates are unreliable (Vehtari et al. 2024)


def _gpd_fit(exceedances: np.ndarray) -> tuple[float, float]:
    """Shape ``k`` and scale ``sigma`` of a generalized Pareto fit to positive, sorted ``exceedances`` (Zhang & Stephens 2009)."""
    x = exceedances
    n = len(x)
    m = 30 + int(math.sqrt(n))
    # a grid of candidate theta = -k / sigma (shape k, scale sigma), weighted by their profile likelihoods
    quartile = x[max(int(n / 4 + 0.5) - 1, 0)]
    theta = 1.0 / x[-1] + (1.0 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))) / (3.0 * quartile)
    k_of_theta = np.log1p(-theta[:, None] * x).mean(axis=1)  # the shape's maximum-likelihood value at each theta
    profile = n * (np.log(-theta / k_of_theta) - k_of_theta - 1.0)
    weights = 1.0 / np.exp(profile[None, :] - profile[:, None]).sum(axis=1)
    theta_hat = float((theta * weights).sum())
    k = float(np.log1p(-theta_hat * x).mean())
    sigma = -k / theta_hat
    return (n * k + 10 * 0.5) / (n + 10), sigma  # shape shrunk by a weakly informative prior towards 0.5


def _tail(log_weights: Any) -> tuple[np.ndarray, int, float, np.ndarray]:
    """``(log weights, tail size, largest finite log weight, sorted weights scaled to a maximum of 1)``."""
    lw = as_float_array(log_weights, "log_weights").reshape(-1)
    finite = lw[np.isfinite(lw)]
    if len(finite) < 10 or np.isnan(lw).any() or np.isposinf(lw).any():
        raise ValueError(f"importance diagnostics need at least 10 finite log weights (and no NaN or +inf), got {len(finite)} finite")
    s = len(finite)
    tail = int(math.ceil(min(0.2 * s, 3.0 * math.sqrt(s))))
    return lw, tail, float(finite.max()), np.sort(np.exp(finite - finite.max()))


def pareto_khat(log_weights: Any) -> float:
    """Pareto ``k``-hat of importance weights given on the log scale (any constant offset; -inf is a zero weight).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> round(pareto_khat(rng.normal(0, 0.1, 4000)), 1) < 0.5  # nearly equal weights
        True
        >>> heavy = -0.9 * np.log(rng.uniform(size=4000))  # w = U^(-0.9): Pareto tail, k = 0.9
        >>> 0.75 < pareto_khat(heavy) < 1.05
        True
    """
    _, tail, _, w = _tail(log_weights)
    return _fit_tail(w, tail)[0]


def _fit_tail(w: np.ndarray, tail: int) -> tuple[float, float, float]:
    """``(k, sigma, threshold)`` of the ``tail`` largest of the sorted weights ``w`` (maximum 1)."""
    threshold = w[len(w) - tail - 1]
    exceed = w[len(w) - tail :] - threshold
    if (exceed > 0).sum() < 5:
        # the tail is (nearly) tied: no tail at all, unless a few weights tower over the rest
        return (math.inf if exceed[-1] > threshold else -math.inf), 0.0, threshold
    k, sigma = _gpd_fit(exceed[exceed > 0])
    return k, sigma, threshold


def pareto_smooth(log_weights: Any) -> tuple[np.ndarray, float]:
    """Pareto-smoothed log weights (PSIS) and their ``k``-hat.

    The largest ``min(S / 5, 3 sqrt(S))`` weights are replaced by the expected order
    statistics of the fitted generalized Pareto tail, capped at the largest raw weight, so
    one extreme draw cannot dominate (Vehtari et al. 2024).  The others are unchanged.

    Example:
        >>> lw, k = pareto_smooth(np.log(np.random.default_rng(0).uniform(size=100)))
        >>> lw.shape, bool(k < 0.5), bool(np.exp(lw).max() <= 1.0)
        ((100,), True, True)
    """
    lw, tail, top, w = _tail(log_weights)
    k, sigma, threshold = _fit_tail(w, tail)
    if not math.isfinite(k) or sigma <= 0:
        return lw.copy(), k
    order = np.argsort(np.where(np.isfinite(lw), lw, -np.inf))[len(lw) - tail :]
    p = (np.arange(1, tail + 1) - 0.5) / tail
    quantiles = threshold + (sigma / k * ((1 - p) ** (-k) - 1) if abs(k) > 1e-8 else -sigma * np.log1p(-p))
    smoothed = lw.copy()
    smoothed[order] = top + np.log(np.minimum(quantiles, 1.0))
    return smoothed, k


def importance_diagnostics(log_weights: Any) -> dict[str, float]:
    """``pareto_k``, ``ess`` (Kish's effective sample size) and ``ess_fraction`` of log importance weights.

    Example:
        >>> d = importance_diagnostics(np.zeros(100) + np.linspace(0, 1e-3, 100))
        >>> round(d["ess"]), d["pareto_k"] < 0.5
        (100, True)
    """
    lw = as_float_array(log_weights, "log_weights").reshape(-1)
    ess = effective_sample_size(lw)
    return {"pareto_k": pareto_khat(lw), "ess": ess, "ess_fraction": ess / len(lw)}


def tempering_exponent(log_weights: Any, target_ess: float) -> float:
    """The largest ``beta`` in (0, 1] whose weights ``w ** beta`` keep an effective sample size of ``target_ess``.

    Degenerate weights (a proposal far from the posterior) say little beyond their largest
    draw; raised to ``beta < 1`` they describe ``q^(1 - beta) p^beta``, a distribution between
    the proposal ``q`` and the target ``p`` that the draws still represent, which is what an
    adaptive proposal should move towards next (geometric tempering).  Returns 1 when the
    weights themselves reach ``target_ess``.

    Example:
        >>> lw = np.log(np.random.default_rng(0).pareto(0.8, 1000) + 1)
        >>> b = tempering_exponent(lw, 500)
        >>> bool(0 < b < 1), round(effective_sample_size(b * lw))
        (True, 500)
    """
    lw = as_float_array(log_weights, "log_weights").reshape(-1)
    if effective_sample_size(lw) >= target_ess:
        return 1.0
    lo, hi = 0.0, 1.0  # ESS(w^beta) falls as beta grows from 0 (all weights equal)
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if effective_sample_size(mid * lw) >= target_ess else (lo, mid)
    return lo if lo > 0 else hi  # never 0: that would erase the -inf weights of impossible draws


def effective_sample_size(log_weights: Any) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` of log importance weights.

    Example:
        >>> effective_sample_size(np.log([1.0, 1.0, 1.0, 1.0])), effective_sample_size([0.0, -np.inf])
        (4.0, 1.0)
    """
    lw = as_float_array(log_weights, "log_weights").reshape(-1)
    w = np.exp(lw - lw[np.isfinite(lw)].max())
    return float(w.sum() ** 2 / (w * w).sum())
