"""Multilevel diagnostics: pooling factors, per-level SBC inputs, LOGO ELPD from full-data draws, ELPD differences.

Pooling factor (Gelman & Hill 2006; Habermann et al. 2024, Sec. 3.1): for a local
parameter ``theta_j`` with hierarchical mean ``mu`` and SD ``sigma``,

    lambda_j = sd(theta_j - mu)^2 / E[sigma^2],

computed from joint posterior draws; 0 means no pooling (the group's own estimate), 1 means
complete pooling towards ``mu``.

ELPD comparison (Vehtari, Gelman & Gabry 2017): with pointwise (here: per left-out group)
ELPD values ``a_k`` and ``b_k`` of two models, ``elpd_diff = sum_k (a_k - b_k)`` and its
standard error is ``sqrt(K * var(a_k - b_k))``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from amortbayes.diagnostics.importance import pareto_smooth


def pooling_factor(local_draws: np.ndarray, sd_draws: np.ndarray, mean_draws: np.ndarray | None = None) -> np.ndarray:
    """Pooling factor per group from draws ``local (L, J)``, ``sd (L,)`` and ``mean (L,)`` (0 if None).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> lam = pooling_factor(rng.normal(0, 0.4, (4000, 3)), np.ones(4000))  # var 0.16 / sd^2 1
        >>> np.round(lam, 1).tolist()
        [0.2, 0.2, 0.2]
    """
    local = np.asarray(local_draws, dtype=float)
    if local.ndim == 1:
        local = local[:, None]
    sd = np.asarray(sd_draws, dtype=float).reshape(-1)
    if local.shape[0] != sd.shape[0]:
        raise ValueError(f"local draws have {local.shape[0]} draws but the SD draws have {sd.shape[0]}")
    mean = np.zeros_like(sd) if mean_draws is None else np.asarray(mean_draws, dtype=float).reshape(-1)
    if mean.shape != sd.shape:
        raise ValueError("mean and SD draws must have the same number of draws")
    if not (np.isfinite(local).all() and np.isfinite(sd).all() and np.isfinite(mean).all()):
        raise ValueError("draws for the pooling factor contain NaN or Inf")
    return np.var(local - mean[:, None], axis=0, ddof=1) / np.mean(sd**2)


def one_group_per_data_set(
    local_draws: np.ndarray, theta_local: np.ndarray, group_mask: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Pick one random existing group per simulated data set for local-parameter SBC.

    Groups of one data set share its global parameters and are dependent; one group per
    data set keeps the SBC ranks independent, as the simultaneous bands assume.

    Args:
        local_draws: ``(S, L, J, P)`` posterior draws of the local parameters.
        theta_local: ``(S, J, P)`` true local parameters.
        group_mask: ``(S, J)`` 1 for existing groups.

    Returns:
        ``draws (S, L, P)`` and ``truth (S, P)`` ready for :func:`sbc_check`.
    """
    draws = np.asarray(local_draws)
    truth = np.asarray(theta_local)
    gm = np.asarray(group_mask) > 0
    if draws.ndim != 4 or truth.ndim != 3 or gm.shape != truth.shape[:2] or draws.shape[0] != truth.shape[0]:
        raise ValueError(
            f"expected local draws (S, L, J, P), truth (S, J, P), group mask (S, J); got "
            f"{draws.shape}, {truth.shape}, {gm.shape}")
    if not gm.any(axis=1).all():
        raise ValueError("every data set needs at least one group")
    rng = np.random.default_rng(seed)
    pick = np.array([rng.choice(np.flatnonzero(row)) for row in gm])
    s = np.arange(truth.shape[0])
    return draws[s, :, pick], truth[s, pick]


def log_mean_exp(log_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log mean_i exp(log_w_i)`` over the last dimension and its Monte Carlo standard error.

    The estimate of a log expectation from importance-weighted terms (LOGO's ``log p(x_k |
    x_-k)``); the standard error is the delta method's ``sd(w) / (mean(w) sqrt(n))``, which a
    few dominant weights drive towards 1.

    Example:
        >>> est, se = log_mean_exp(torch.log(torch.tensor([1.0, 3.0])))
        >>> round(est.item(), 4), round(se.item(), 4)  # log 2; sd 1.414 / (2 sqrt 2)
        (0.6931, 0.5)
    """
    n = log_w.shape[-1]
    w = torch.exp(log_w - log_w.amax(-1, keepdim=True))
    return torch.logsumexp(log_w, dim=-1) - math.log(n), w.std(-1) / (w.mean(-1) * math.sqrt(n))


def weighted_quantiles(values: torch.Tensor, log_w: torch.Tensor, probs: tuple[float, ...]) -> torch.Tensor:
    """Quantiles ``probs`` of ``values`` under normalized weights ``exp(log_w)``, over the last dimension.

    The smallest value whose cumulative weight reaches each probability (the inverse of the
    weighted empirical CDF).  Returns ``(..., len(probs))``.

    Example:
        >>> v = torch.tensor([1.0, 2.0, 3.0, 4.0])
        >>> weighted_quantiles(v, torch.log(torch.tensor([0.1, 0.1, 0.1, 0.7])), (0.25, 0.5)).tolist()
        [3.0, 4.0]
    """
    order = torch.argsort(values, dim=-1)
    v = torch.gather(values, -1, order)
    w = torch.softmax(torch.gather(log_w, -1, order).double(), dim=-1)
    cdf = torch.cumsum(w, dim=-1)
    p = torch.tensor(probs, dtype=cdf.dtype, device=cdf.device).expand(*cdf.shape[:-1], len(probs)).contiguous()
    idx = torch.searchsorted(cdf.contiguous(), p - 1e-12).clamp_max(v.shape[-1] - 1)
    return torch.gather(v, -1, idx)


def psis_logo(log_px: np.ndarray, groups: Any = None) -> pd.DataFrame:
    """Leave-one-group-out ELPD from draws of the full-data posterior, by Pareto-smoothed importance sampling.

    ``log_px (S, J)`` holds ``log p(x_k | g_s)``: each group's likelihood with its own
    parameters integrated out, at ``S`` draws ``g_s`` of the global parameters from the
    posterior given all groups (a Stan fit;
    :meth:`amortbayes.MultilevelAmortizer.group_log_evidence` computes it).  Since
    ``p(g | x_-k) ∝ p(g | x) / p(x_k | g)``, the LOGO posterior is the full posterior
    reweighted by ``1 / p(x_k | g_s)``, and

        log p(x_k | x_-k) ~= log( sum_s w_s p(x_k | g_s) / sum_s w_s ),

    with ``w_s`` the Pareto-smoothed weights (:func:`amortbayes.diagnostics.pareto_smooth`).
    Only the global parameters are reweighted; reweighting joint draws with a left-out
    group's *own* parameters inside fails almost always (Habermann et al. 2024, Sec. 3.2).
    ``khat`` above 0.7 says the left-out group moved the global posterior too much for the
    estimate to be trusted (refit without it).

    Returns a DataFrame: ``group``, ``elpd``, ``khat``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> out = psis_logo(np.log(rng.uniform(0.5, 1.0, size=(400, 2))), ["a", "b"])
        >>> out["group"].tolist(), bool((out["khat"] < 0.7).all())
        (['a', 'b'], True)
    """
    elpd, khat, labels = _psis_elpd(log_px, groups, "group")
    return pd.DataFrame({"group": labels, "elpd": elpd, "khat": khat})


def psis_loo(log_lik: np.ndarray, observations: Any = None, log_weights: np.ndarray | None = None) -> pd.DataFrame:
    """PSIS-LOO (Vehtari, Gelman & Gabry 2017) per observation from posterior draws.

    ``log_lik (S, N)`` holds ``log p(y_i | theta_s)`` at ``S`` equally weighted posterior
    draws; each observation's leave-one-out posterior is the full one reweighted by
    ``1 / p(y_i | theta_s)`` (the same estimator as :func:`psis_logo`, one row in place of
    one group).  Draws of a proposal ``q`` instead of the posterior carry their full-data log
    importance weights ``log_weights (S,)`` (``log p(theta_s, y) - log q(theta_s)`` up to a
    constant): the leave-one-out weights are then ``w_s / p(y_i | theta_s)``, Pareto-smoothed
    the same way.  ``log_weights (S, N)`` give each observation's leave-one-out log weights
    themselves (``log p(theta_s, y_-i) - log q(theta_s)``): needed where a draw has zero
    likelihood for one observation (a support that ends at the data), since dividing by that
    zero is undefined while the leave-one-out weight is not.  Returns ``observation``,
    ``elpd``, ``khat``; ``elpd_summary`` totals it.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> out = psis_loo(np.log(rng.uniform(0.5, 1.0, size=(400, 3))))
        >>> len(out), bool((out["khat"] < 0.7).all())
        (3, True)
    """
    elpd, khat, labels = _psis_elpd(log_lik, observations, "observation", log_weights)
    return pd.DataFrame({"observation": labels, "elpd": elpd, "khat": khat})


def elpd_summary(pointwise: pd.DataFrame, log_lik: np.ndarray | None = None) -> dict[str, float]:
    """``elpd`` and its SE (sqrt(N) times the SD of the pointwise values), and ``p_loo`` when ``log_lik`` is given."""
    e = pointwise["elpd"].to_numpy()
    out = {"elpd": float(e.sum()), "se": float(np.sqrt(len(e)) * e.std(ddof=1)) if len(e) > 1 else float("nan"),
           "max_khat": float(pointwise["khat"].max()), "n_khat_above_0.7": int((pointwise["khat"] > 0.7).sum())}
    if log_lik is not None:
        lp = np.asarray(log_lik, dtype=float)
        lppd = float((np.logaddexp.reduce(lp, axis=0) - np.log(lp.shape[0])).sum())
        out["p_loo"] = lppd - out["elpd"]
    return out


def _psis_elpd(log_p: np.ndarray, labels: Any, what: str,
               log_weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, list]:
    lp = np.asarray(log_p, dtype=float)
    base = np.zeros(lp.shape[0]) if log_weights is None else np.asarray(log_weights, dtype=float)
    per_item = base.ndim == 2  # each observation's own leave-out log weights
    if (base.shape != lp.shape if per_item else base.shape != (lp.shape[0],)) \
            or not np.all(np.isfinite(base) | np.isneginf(base)):
        raise ValueError(f"log_weights must be {lp.shape[0]} finite values (or -inf), one per draw, or one per "
                         f"draw and {what} {lp.shape}")
    if lp.ndim != 2 or lp.shape[0] < 10:
        raise ValueError(f"log likelihoods must be (draws, {what}s) with at least 10 draws, got shape {lp.shape}")
    if np.isnan(lp).any() or np.isposinf(lp).any():
        raise ValueError("the log likelihoods contain NaN or +Inf")
    labels = list(range(lp.shape[1])) if labels is None else list(labels)
    if len(labels) != lp.shape[1]:
        raise ValueError(f"{len(labels)} {what} labels for {lp.shape[1]} {what}s")
    elpd, khat = np.empty(lp.shape[1]), np.empty(lp.shape[1])
    for k in range(lp.shape[1]):
        if not per_item and np.isneginf(lp[:, k]).any():
            raise ValueError(f"{what} {labels[k]!r} has zero likelihood under some draws; its leave-out weight "
                             "is infinite")
        log_w, khat[k] = pareto_smooth(base[:, k] if per_item else base - lp[:, k])
        log_w = log_w - np.logaddexp.reduce(log_w)
        elpd[k] = np.logaddexp.reduce(log_w + lp[:, k])
    return elpd, khat, labels


def elpd_compare(elpd_a: np.ndarray, elpd_b: np.ndarray, names: tuple[str, str] = ("a", "b")) -> pd.DataFrame:
    """ELPD totals of two models on the same groups, their difference and its standard error.

    Example:
        >>> elpd_compare(np.array([-1.0, -2.0]), np.array([-1.5, -2.5]), ("m1", "m2"))["elpd_diff"].tolist()
        [1.0]
    """
    a = np.asarray(elpd_a, dtype=float).reshape(-1)
    b = np.asarray(elpd_b, dtype=float).reshape(-1)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"need pointwise ELPD of the same >= 2 groups for both models, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("pointwise ELPD values contain NaN or Inf")
    d = a - b
    return pd.DataFrame(
        {
            f"elpd_{names[0]}": [a.sum()],
            f"elpd_{names[1]}": [b.sum()],
            "elpd_diff": [d.sum()],
            "se_diff": [np.sqrt(d.size * d.var(ddof=1))],
        }
    )
