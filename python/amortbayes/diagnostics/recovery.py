"""Parameter recovery: how well posterior means track the true parameter values.

With posterior means ``m_s = (1/L) sum_l theta_s^(l)`` and true values ``theta_s`` over
``S`` simulated data sets, per parameter:

    r2          = 1 - sum_s (m_s - theta_s)^2 / sum_s (theta_s - mean(theta))^2
    nrmse       = sqrt(mean_s (m_s - theta_s)^2) / (max_s theta_s - min_s theta_s)
    correlation = Pearson correlation of (m_s, theta_s).

Even an exact posterior does not give ``r2 = 1``: for ``theta ~ p(theta)`` the posterior
mean is the best predictor of ``theta``, and by the law of total variance its expected
``r2`` is ``1 - E[Var(theta | x)] / Var(theta)``, the average posterior contraction.  A
conjugate ``N(0, 1)`` prior with posterior variance ``s^2`` gives ``r2 ~ 1 - s^2`` and
``correlation ~ sqrt(1 - s^2)``.  Recovery therefore measures how informative the data
are *and* how well the approximation uses them; calibration is checked with SBC.

References:
    Schad, Betancourt & Vasishth (2021). Toward a principled Bayesian workflow in
    cognitive science. Psychological Methods 26(1), 103-126.

    Radev, Mertens, Voss, Ardizzone & Köthe (2020). BayesFlow: Learning complex stochastic
    models with invertible neural networks. IEEE TNNLS 33(4), 1452-1466.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from amortbayes.diagnostics._validation import as_draws_truth, names_for

__all__ = ["recovery"]


def recovery(
    draws: np.ndarray,
    truth: np.ndarray,
    parameter_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Recovery of true values by posterior means, one row per parameter.

    Args:
        draws: Posterior draws, shape ``(S, L, D)`` (or ``(S, L)``), ``S >= 2``.
        truth: True values, shape ``(S, D)`` (or ``(S,)``); must vary across data sets.
        parameter_names: ``D`` names; default ``theta[0], theta[1], ...``.

    Returns:
        Columns ``parameter``, ``r2``, ``nrmse``, ``correlation``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> truth = rng.normal(size=(100, 2))
        >>> draws = truth[:, None, :] + 0.01 * rng.normal(size=(100, 50, 2))
        >>> bool((recovery(draws, truth)["r2"] > 0.99).all())
        True
    """
    d, t = as_draws_truth(draws, truth)
    names = names_for(parameter_names, d.shape[2])
    if d.shape[0] < 2:
        raise ValueError(f"recovery needs at least 2 simulated data sets, got {d.shape[0]}")
    spread = t.max(axis=0) - t.min(axis=0)
    constant = [names[j] for j in np.flatnonzero(spread == 0)]
    if constant:
        raise ValueError(f"truth is constant across data sets for parameter(s) {constant}: recovery is undefined")

    mean = d.mean(axis=1)
    error = mean - t
    sse = np.sum(error**2, axis=0)
    sst = np.sum((t - t.mean(axis=0)) ** 2, axis=0)
    centred_mean = mean - mean.mean(axis=0)
    centred_truth = t - t.mean(axis=0)
    denominator = np.sqrt(np.sum(centred_mean**2, axis=0) * sst)
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = np.where(denominator > 0, np.sum(centred_mean * centred_truth, axis=0) / denominator, np.nan)
    return pd.DataFrame(
        {
            "parameter": names,
            "r2": 1.0 - sse / sst,
            "nrmse": np.sqrt(sse / d.shape[0]) / spread,
            "correlation": correlation,
        }
    )
