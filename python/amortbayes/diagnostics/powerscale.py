"""Power-scaling sensitivity (priorsense): how far the posterior moves when the prior or likelihood is raised to a power.

For a component ``f`` (the prior ``p(theta)`` or the likelihood ``p(x | theta)``) power-scaled
by ``alpha``, the posterior becomes ``p_alpha(theta | x) ∝ p(theta | x) f(theta)^(alpha - 1)``.
Its distance to the base posterior, per parameter, is the cumulative Jensen-Shannon distance
(CJS, Nguyen & Vreeken 2015) between the two marginal distribution functions ``P`` (base)
and ``Q`` (scaled),

    CJS(P || Q) = ∫ P log2(2P / (P + Q)) + (Q - P) / (2 ln 2),
    d(P, Q) = sqrt( (CJS(P || Q) + CJS(Q || P)) / ∫ (P + Q) ),

taken as the larger of the distances of ``theta`` and ``-theta`` (distribution functions
integrate from the left).  The sensitivity is its derivative with respect to ``log2(alpha)``
at ``alpha = 1`` by finite differences at ``alpha = 1 / (1 + delta)`` and ``1 + delta``:

    s = (d_lower + d_upper) / (2 log2(1 + delta)).

With base draws ``theta_s`` the scaled posterior is the same draws with weights
``w_s ∝ f(theta_s)^(alpha - 1)`` (Pareto-smoothed, as priorsense does) when ``f`` is known at
the draws, or ``w_s ∝ q(theta_s | x, alpha) / q(theta_s | x, 1)`` from a network conditioned on
``alpha`` (:func:`amortbayes.sensitivity.powerscale_sensitivity`).  Diagnosis at priorsense's
threshold 0.05: both sensitivities at or above it, "potential prior-data conflict"; the prior's
above and the likelihood's below, "potential strong prior / weak likelihood"; else "-".

References:
    Kallioinen, Paananen, Bürkner & Vehtari (2023). Detecting and diagnosing prior and
    likelihood sensitivity with power-scaling. Statistics and Computing 34, 57.
    Nguyen & Vreeken (2015). Non-parametric Jensen-Shannon divergence. ECML PKDD.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from amortbayes.diagnostics.importance import pareto_smooth

__all__ = ["SENSITIVITY_THRESHOLD", "cjs_distance", "powerscale_diagnosis", "powerscale_from_draws",
           "sensitivity_from_weights"]

SENSITIVITY_THRESHOLD = 0.05
DELTA = 0.01


def cjs_distance(draws: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """CJS distance between the equally weighted draws ``(S, D)`` and the same draws weighted by ``weights (S,)``, ``(D,)``.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(1000, 1))
        >>> round(float(cjs_distance(x, np.ones(1000))[0]), 6)
        0.0
    """
    draws = np.asarray(draws, dtype=float).reshape(len(draws), -1)
    w = np.asarray(weights, dtype=float)
    w = w / w.sum()
    s = draws.shape[0]
    order = np.argsort(draws, axis=0)
    sorted_draws = np.take_along_axis(draws, order, axis=0)
    width = np.diff(sorted_draws, axis=0)  # (S - 1, D): the steps between consecutive draws
    p = (np.arange(1, s) / s)[:, None]  # base ECDF on each step
    q = np.cumsum(w[order], axis=0)[:-1]  # weighted ECDF on each step
    m = 0.5 * (p + q)

    def log2_ratio(a: np.ndarray) -> np.ndarray:
        return np.log2(np.where(a > 0, a, 1.0) / np.where(m > 0, m, 1.0))

    int_p, int_q = (width * p).sum(0), (width * q).sum(0)
    cjs_pq = np.maximum((width * p * log2_ratio(p)).sum(0) + (int_q - int_p) / (2 * np.log(2)), 0.0)
    cjs_qp = np.maximum((width * q * log2_ratio(q)).sum(0) + (int_p - int_q) / (2 * np.log(2)), 0.0)
    bound = int_p + int_q
    return np.sqrt(np.where(bound > 0, (cjs_pq + cjs_qp) / np.where(bound > 0, bound, 1.0), 0.0))


def _distance(draws: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.maximum(cjs_distance(draws, weights), cjs_distance(-np.asarray(draws, dtype=float), weights))


def sensitivity_from_weights(draws: np.ndarray, log_w_lower: np.ndarray, log_w_upper: np.ndarray,
                             delta: float = DELTA) -> np.ndarray:
    """Per-parameter sensitivity ``(D,)`` from base draws ``(S, D)`` and the log weights of the two scaled posteriors."""
    def weights(lw):
        lw = np.asarray(lw, dtype=float)
        return np.exp(lw - lw.max())

    d = _distance(draws, weights(log_w_lower)) + _distance(draws, weights(log_w_upper))
    return d / (2 * np.log2(1 + delta))


def powerscale_from_draws(draws: np.ndarray, log_prior: np.ndarray, log_lik: np.ndarray,
                          names: Sequence[str] | None = None, delta: float = DELTA) -> pd.DataFrame:
    """Priorsense's sensitivity by importance reweighting of (exact) posterior draws.

    Args:
        draws: ``(S, D)`` posterior draws (Stan's or importance-corrected and resampled).
        log_prior: ``(S,)`` log prior density at each draw.
        log_lik: ``(S,)`` or ``(S, N)`` log likelihood (summed over observations).
        names: parameter names.

    Returns:
        a DataFrame of ``variable``, ``prior``, ``likelihood``, ``diagnosis`` (priorsense's layout).
    """
    draws = np.asarray(draws, dtype=float).reshape(len(draws), -1)
    ll = np.asarray(log_lik, dtype=float)
    ll = ll.reshape(len(draws), -1).sum(1)
    lp = np.asarray(log_prior, dtype=float).reshape(-1)
    keep = np.isfinite(ll) & np.isfinite(lp) & np.isfinite(draws).all(1)
    if not keep.all():  # draws of zero posterior density (a network's, not an exact posterior's)
        import warnings

        warnings.warn(f"{int((~keep).sum())} of {len(keep)} draws have zero prior or likelihood density and are "
                      "left out", RuntimeWarning, stacklevel=2)
        draws, ll, lp = draws[keep], ll[keep], lp[keep]
    out = {}
    for component, f in (("prior", lp), ("likelihood", ll)):
        lw = [pareto_smooth((a - 1) * f)[0] for a in (1 / (1 + delta), 1 + delta)]
        out[component] = sensitivity_from_weights(draws, lw[0], lw[1], delta)
    return powerscale_diagnosis(out["prior"], out["likelihood"], names)


def powerscale_diagnosis(prior: Any, likelihood: Any, names: Sequence[str] | None = None,
                         threshold: float = SENSITIVITY_THRESHOLD) -> pd.DataFrame:
    """Priorsense's table: ``variable``, ``prior``, ``likelihood``, ``diagnosis``.

    Example:
        >>> powerscale_diagnosis([0.1, 0.1, 0.0], [0.2, 0.0, 0.1], ["a", "b", "c"])["diagnosis"].tolist()
        ['potential prior-data conflict', 'potential strong prior / weak likelihood', '-']
    """
    prior, likelihood = np.asarray(prior, dtype=float), np.asarray(likelihood, dtype=float)
    names = list(names) if names is not None else [f"theta[{i + 1}]" for i in range(prior.size)]
    diagnosis = np.where((prior >= threshold) & (likelihood >= threshold), "potential prior-data conflict",
                         np.where((prior >= threshold) & (likelihood < threshold),
                                  "potential strong prior / weak likelihood", "-"))
    return pd.DataFrame({"variable": names, "prior": prior, "likelihood": likelihood, "diagnosis": diagnosis})
