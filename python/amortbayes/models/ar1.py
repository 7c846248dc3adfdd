"""Multilevel AR(1) model with two covariates (Habermann et al. 2024, eq. 20-21), its Stan data and ChickWeight.

For group ``j`` and time ``t = 1..T_j`` (``y[j, 0]`` is the initial value):

    y[j,t] ~ Normal(alpha_j + beta_j y[j,t-1] + gamma_j u[j,t] + delta_j w[j,t], sigma_j)
    alpha_j ~ Normal(mu_alpha, sigma_alpha),  mu_alpha ~ Normal(0, 0.5),  sigma_alpha ~ Normal+(0, 0.25)
    beta_j  ~ Normal(mu_beta, sigma_beta),    mu_beta  ~ Normal(0, 0.2),  sigma_beta  ~ Normal+(0, 0.15)
    gamma_j ~ Normal(mu_gamma, sigma_gamma),  mu_gamma ~ Normal(0, 0.5),  sigma_gamma ~ Normal+(0, 0.25)
    delta_j ~ Normal(mu_delta, sigma_delta),  mu_delta ~ Normal(0, 0.5),  sigma_delta ~ Normal+(0, 0.25)
    log sigma_j ~ Normal(mu_sigma, sigma_sigma), mu_sigma ~ Normal(-1, 0.5), sigma_sigma ~ Normal+(0, 1)

The priors and names are those of ``stan/ar1_multilevel.stan``, so the Stan fit is the
reference for the amortized posterior.  Each observed row is one time step
``(y, y_lag, u, w)`` = ``(y[j,t], y[j,t-1], u[j,t], w[j,t])`` in time order; the likelihood
conditions on the ``y_lag`` column (the initial value included), exactly as the Stan program
does, so :meth:`AR1Multilevel.log_likelihood` is exact on the padded layout.

Simulation choices (the paper fixes only the initial value): ``y[j,0] ~ Normal(0.5, 1)``
(Habermann et al. 2024, Sec. 3.1), and each covariate of each group is a stationary
Gaussian AR(1) on the standardized scale, ``c[j,1] ~ Normal(0, 1)``,
``c[j,t] = rho c[j,t-1] + sqrt(1 - rho^2) e[j,t]`` with ``rho ~ Uniform(covariate_persistence)``
drawn per group and covariate, so one batch mixes i.i.d. (``rho = 0``), smooth trend-like
and nearly constant (``rho -> 1``) covariates, all marginally ``Normal(0, 1)``.  Real
covariates should therefore be standardized (the paper standardizes household debt and GDP
per capita).

References:
    Habermann, Schmitt, Kühmichel, Bulling, Radev & Bürkner (2024).  Amortized Bayesian
    Multilevel Models.  arXiv:2408.13230, Sec. 3.1 (eq. 20-21).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from amortbayes.simulation import MultilevelModel

__all__ = ["AR1Multilevel", "chickweight_frame", "stan_data_from_frame"]

_STAN_COLUMNS = {"y": "y", "y_lag": "ylag", "u": "u", "w": "w"}


def _half_normal(scale: float, n: int, generator) -> torch.Tensor:
    return scale * torch.randn(n, generator=generator).abs()


@dataclasses.dataclass(frozen=True)
class AR1Multilevel(MultilevelModel):
    """Autoregressive AR(1) time series per group with varying intercept, AR coefficient, two slopes and noise.

    Args:
        y0_loc: Mean of the initial value ``y[j,0]``.
        y0_scale: Standard deviation of the initial value.
        covariate_persistence: Range ``(lo, hi)`` within ``[0, 1]`` of the per-group AR(1)
            coefficient of the simulated covariates.
        n_groups: Inclusive range of the number of groups ``J``.
        n_obs: Inclusive range of the series lengths ``T_j`` (rows after the initial value).

    Example:
        >>> import torch
        >>> model = AR1Multilevel()
        >>> batch = model.simulate(4, torch.Generator().manual_seed(0))
        >>> batch["theta_global"].shape, batch["x"].shape[-1], model.data_names
        (torch.Size([4, 10]), 4, ('y', 'y_lag', 'u', 'w'))
    """

    y0_loc: float = 0.5
    y0_scale: float = 1.0
    covariate_persistence: tuple[float, float] = (0.0, 1.0)
    n_groups: tuple[int, int] = (5, 20)
    n_obs: tuple[int, int] = (5, 30)

    name = "ar1_multilevel"
    parameter_names = (
        "mu_alpha", "sigma_alpha", "mu_beta", "sigma_beta", "mu_gamma",
        "sigma_gamma", "mu_delta", "sigma_delta", "mu_sigma", "sigma_sigma",
    )
    parameter_support = ("real", "positive") * 5
    local_parameter_names = ("alpha", "beta", "gamma", "delta", "log_sigma")
    local_parameter_support = ("real",) * 5
    data_names = ("y", "y_lag", "u", "w")

    #: prior location and scale of each global parameter (eq. 21); scales are half-normal.
    prior_locs = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0)
    prior_scales = (0.5, 0.25, 0.2, 0.15, 0.5, 0.25, 0.5, 0.25, 0.5, 1.0)

    def __post_init__(self) -> None:
        for f in ("covariate_persistence", "n_groups", "n_obs"):
            object.__setattr__(self, f, tuple(getattr(self, f)))
        if self.y0_scale <= 0:
            raise ValueError(f"AR1Multilevel needs y0_scale > 0, got {self.y0_scale}")
        lo, hi = self.covariate_persistence
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"covariate_persistence must satisfy 0 <= lo <= hi <= 1, got {(lo, hi)}")

    # -- sampling -----------------------------------------------------------------------
    def sample_global(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        cols = []
        for loc, scale, support in zip(self.prior_locs, self.prior_scales, self.parameter_support):
            if support == "positive":
                cols.append(_half_normal(scale, n, generator))
            else:
                cols.append(loc + scale * torch.randn(n, generator=generator))
        return torch.stack(cols, dim=-1)

    def global_log_prior(self, theta_global: torch.Tensor) -> torch.Tensor:
        lp = 0.0
        for k, (loc, scale, support) in enumerate(zip(self.prior_locs, self.prior_scales, self.parameter_support)):
            d = torch.distributions.HalfNormal(scale) if support == "positive" else torch.distributions.Normal(loc, scale)
            lp = lp + d.log_prob(theta_global[..., k])
        return lp

    def sample_local(self, theta_global, n_groups, generator=None) -> torch.Tensor:
        z = torch.randn(*theta_global.shape[:-1], n_groups, 5, generator=generator)
        return theta_global[..., None, 0::2] + theta_global[..., None, 1::2] * z

    def simulate_data(self, theta_global, theta_local, n_obs, generator=None, sizes=None) -> torch.Tensor:
        b, j = theta_local.shape[:2]
        lo, hi = self.covariate_persistence
        rho = lo + (hi - lo) * torch.rand(b, j, 2, generator=generator)
        innovation = torch.sqrt((1.0 - rho**2).clamp_min(0.0))
        cov_noise = torch.randn(b, j, n_obs, 2, generator=generator)
        eps = torch.randn(b, j, n_obs, generator=generator)
        y_prev = self.y0_loc + self.y0_scale * torch.randn(b, j, generator=generator)
        alpha, beta, gamma, delta, log_sigma = theta_local.unbind(-1)
        sigma = torch.exp(log_sigma)
        rows = []
        cov = cov_noise[:, :, 0]  # stationary start: Normal(0, 1)
        for t in range(n_obs):
            if t > 0:
                cov = rho * cov + innovation * cov_noise[:, :, t]
            u, w = cov.unbind(-1)
            y = alpha + beta * y_prev + gamma * u + delta * w + sigma * eps[:, :, t]
            rows.append(torch.stack([y, y_prev, u, w], dim=-1))
            y_prev = y
        return torch.stack(rows, dim=2)

    # -- densities (as in stan/ar1_multilevel.stan) -----------------------------------------
    def local_log_prior(self, theta_global, theta_local) -> torch.Tensor:
        loc = theta_global[..., None, 0::2]
        scale = theta_global[..., None, 1::2]
        z = (theta_local - loc) / scale
        lp = -0.5 * z**2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)
        return lp.sum(-1)

    def log_likelihood(self, theta_global, theta_local, x, mask) -> torch.Tensor:
        p = theta_local[..., None, :]  # (..., J, 1, 5) against rows (..., J, N)
        mean = p[..., 0] + p[..., 1] * x[..., 1] + p[..., 2] * x[..., 2] + p[..., 3] * x[..., 3]
        log_sigma = p[..., 4]
        lp = -0.5 * ((x[..., 0] - mean) * torch.exp(-log_sigma)) ** 2 - log_sigma - 0.5 * math.log(2 * math.pi)
        return torch.where(mask > 0, lp, torch.zeros_like(lp)).sum(-1)

    # -- Stan --------------------------------------------------------------------------------
    def stan_data(self, x: Any, mask: Any, group_mask: Any | None = None) -> dict[str, Any]:
        """Data for ``stan/ar1_multilevel.stan`` from one padded data set.

        Args:
            x: ``(J, N, 4)`` (or ``(1, J, N, 4)``) rows ``(y, y_lag, u, w)``.
            mask: ``(J, N)`` 1.0 for observed rows, a prefix of each group.
            group_mask: ``(J,)`` 1.0 for existing groups; default: groups with a row.

        Returns:
            ``J``, ``T_max``, ``T`` and the ``J x T_max`` arrays ``y``, ``ylag``, ``u``, ``w``
            (padding 0) of the existing groups.

        Raises:
            ValueError: wrong shapes, a mask that is not a prefix, an existing group without rows.
        """
        x = _numpy(x)
        mask = _numpy(mask)
        if x.ndim == 4 and x.shape[0] == 1:
            x = x[0]
        if mask.ndim == 3 and mask.shape[0] == 1:
            mask = mask[0]
        if x.ndim != 3 or x.shape[-1] != len(self.data_names):
            raise ValueError(f"x must have shape (J, N, {len(self.data_names)}) for one data set, got {x.shape}")
        if mask.shape != x.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} does not match x shape {x.shape[:2]}")
        observed = mask > 0
        if group_mask is None:
            keep = observed.any(-1)
        else:
            keep = _numpy(group_mask).reshape(-1) > 0
            if keep.shape[0] != x.shape[0]:
                raise ValueError(f"group_mask has {keep.shape[0]} groups, x has {x.shape[0]}")
        x, observed = x[keep], observed[keep]
        if x.shape[0] == 0:
            raise ValueError("the data set has no groups")
        sizes = observed.sum(-1)
        if (sizes == 0).any():
            raise ValueError(f"group {int(np.argmax(sizes == 0)) + 1} has zero observations")
        if (observed != (np.arange(x.shape[1])[None, :] < sizes[:, None])).any():
            raise ValueError("the observed rows of every group must be a prefix (time series padded at the end)")
        t_max = int(sizes.max())
        x = np.where(observed[..., None], x, 0.0)[:, :t_max]
        out: dict[str, Any] = {"J": int(x.shape[0]), "T_max": t_max, "T": sizes.astype(int).tolist()}
        for k, name in enumerate(self.data_names):
            out[_STAN_COLUMNS[name]] = x[..., k]
        return out


def stan_data_from_frame(frame: pd.DataFrame, group: str, columns: dict[str, str] | None = None) -> dict[str, Any]:
    """Data for ``stan/ar1_multilevel.stan`` from a long frame with one row per time step.

    Args:
        frame: Rows in time order within each group (e.g. :func:`chickweight_frame`).
        group: Grouping column (groups ordered by its categories / sorted values).
        columns: Maps the model's names ``y, y_lag, u, w`` to frame columns (default: same).

    Example:
        >>> d = stan_data_from_frame(chickweight_frame(), group="Chick")
        >>> d["J"], d["T_max"], sorted(d)
        (49, 10, ['J', 'T', 'T_max', 'u', 'w', 'y', 'ylag'])
    """
    from amortbayes.reference.stan import padded_groups

    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(_STAN_COLUMNS))
    if unknown:
        raise ValueError(f"columns= maps unknown model variable(s) {unknown}; the model's are {list(_STAN_COLUMNS)}")
    renamed = pd.DataFrame({group: frame[group]})
    for name, stan_name in _STAN_COLUMNS.items():
        source = columns.get(name, name)
        if source not in frame.columns:
            raise ValueError(f"frame has no column {source!r} (model variable {name!r})")
        renamed[stan_name] = frame[source].to_numpy(dtype=np.float64)
    return padded_groups(renamed, group, list(_STAN_COLUMNS.values()), size_name="T", max_name="T_max")


def chickweight_frame() -> pd.DataFrame:
    """ChickWeight (:func:`amortbayes.data.load_chickweight`) as AR(1) rows ``(y, y_lag, u, w)`` per chick.

    Per chick, with measurements at days ``t_0 < t_1 < ...`` and weights ``W``:

    * growth rate ``r_i = (log W_i - log W_{i-1}) / (t_i - t_{i-1})`` (log-weight
      *difference* per day; the last interval, day 20 to 21, is one day long, the others
      two).  Regressing on differences keeps the series stationary, as in the paper;
    * ``y = (r_i - m) / s`` with ``m, s`` the mean and SD of all 528 rates, and
      ``y_lag`` the previous rate on the same scale, so ``y_lag[i] == y[i-1]`` within a chick;
    * the covariates are taken at the start of the interval ``t_{i-1}``, as in eq. 20:
      ``u`` = standardized age ``t_{i-1}`` (mean and SD over the kept rows), ``w`` = relative
      size: ``log W_{i-1}`` standardized among all chicks weighed on day ``t_{i-1}``;
    * rows without a lag (the first two measurements of each chick) are dropped, which
      drops chick 18 (two measurements): 49 chicks, 478 rows, ``T_j`` in 5..10 (45 chicks 10).

    Columns: ``Chick`` (the group, category), ``y``, ``y_lag``, ``u``, ``w`` (float64) and,
    for reference, ``Time`` (day ``t_i``), ``weight`` and ``Diet``.  Diet is constant within a
    chick, so it is not used as a covariate (its slope would not be identified per chick).

    Prior predictive check (``tests/python/test_ar1.py``; 1000 :class:`AR1Multilevel` data
    sets with J = 49, T = 10): all values lie in ``[-3.2, 2.8]``.  The 1, 10, 25, 50, 75, 90
    and 99 % quantiles of ``y`` and ``y_lag`` each fall in the central 95 % of the same
    quantile over the simulated data sets (at their 15th to 78th percentiles), so the
    responses look like typical prior draws.  The covariates stay inside the simulated range
    but differ in shape: ``u`` (evenly spaced ages) has lighter tails than the simulator's
    Gaussian covariates (its 1 % and 99 % quantiles are less extreme than in every simulated
    data set), and ``w`` is left-skewed (small chicks fall far behind; its 25 % quantile sits
    in the top 1 % of the simulated ones) - a mild covariate shift, no extrapolation.  With
    49 chicks, train with ``AR1Multilevel(n_groups=(5, 50))``: the default stops at 20 groups.

    Example:
        >>> df = chickweight_frame()
        >>> df["Chick"].nunique(), len(df), list(df.columns[:5])
        (49, 478, ['Chick', 'y', 'y_lag', 'u', 'w'])
    """
    from amortbayes.data import load_chickweight

    df = load_chickweight().sort_values(["Chick", "Time"], kind="stable").reset_index(drop=True)
    log_w = np.log(df["weight"])
    by_chick = df.groupby("Chick", observed=True)
    rate = log_w.groupby(df["Chick"], observed=True).diff() / by_chick["Time"].diff()
    m, s = rate.mean(), rate.std(ddof=1)
    y = (rate - m) / s
    y_lag = y.groupby(df["Chick"], observed=True).shift()
    start = by_chick["Time"].shift()
    size = (log_w - log_w.groupby(df["Time"]).transform("mean")) / log_w.groupby(df["Time"]).transform("std")
    size_start = size.groupby(df["Chick"], observed=True).shift()
    keep = y_lag.notna().to_numpy()
    u = (start[keep] - start[keep].mean()) / start[keep].std(ddof=1)
    out = pd.DataFrame({
        "Chick": df["Chick"][keep].cat.remove_unused_categories(),
        "y": y[keep],
        "y_lag": y_lag[keep],
        "u": u,
        "w": size_start[keep],
        "Time": df["Time"][keep],
        "weight": df["weight"][keep],
        "Diet": df["Diet"][keep],
    })
    return out.reset_index(drop=True)


def _numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)
