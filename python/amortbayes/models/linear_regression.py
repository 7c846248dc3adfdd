"""Gaussian linear regression with known noise and a variable number of observations; closed-form posterior.

    beta ~ N(0, s0^2 I_K),   x_ik ~ N(0, 1),   y_i | beta, x_i ~ N(beta_0 + sum_k beta_k x_ik, sigma^2)

Each observed row is ``(x_i1, ..., x_iP, y_i)``.  With design matrix ``X`` (a column of
ones and the covariates) the posterior is ``N(m, S)``, ``S^-1 = I/s0^2 + X'X/sigma^2``,
``m = S X'y / sigma^2``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from amortbayes.simulation import FlatModel


@dataclasses.dataclass(frozen=True)
class GaussianLinearRegression(FlatModel):
    """Intercept and ``n_covariates`` slopes with known ``noise_sd``; covariates are simulated.

    Example:
        >>> GaussianLinearRegression(n_covariates=2).parameter_names
        ('b_Intercept', 'b_x1', 'b_x2')
    """

    n_covariates: int = 2
    prior_sd: float = 1.0
    noise_sd: float = 1.0
    n_obs: tuple[int, int] = (10, 50)

    name = "gaussian_linear"

    def __post_init__(self) -> None:
        if self.n_covariates < 1 or self.prior_sd <= 0 or self.noise_sd <= 0:
            raise ValueError("GaussianLinearRegression needs n_covariates >= 1 and positive sds")
        object.__setattr__(self, "n_obs", tuple(self.n_obs))

    @property
    def parameter_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("b_Intercept",) + tuple(f"b_x{k + 1}" for k in range(self.n_covariates))

    @property
    def data_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(f"x{k + 1}" for k in range(self.n_covariates)) + ("y",)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.prior_sd * torch.randn(n, self.n_covariates + 1, generator=generator)

    def simulate_data(self, theta, n_obs, generator=None) -> torch.Tensor:
        b = theta.shape[0]
        cov = torch.randn(b, n_obs, self.n_covariates, generator=generator)
        mean = theta[:, None, 0] + (cov * theta[:, None, 1:]).sum(-1)
        y = mean + self.noise_sd * torch.randn(b, n_obs, generator=generator)
        return torch.cat([cov, y[..., None]], dim=-1)

    def posterior(self, x: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Closed-form posterior means ``(B, K)`` and standard deviations ``(B, K)``."""
        mean, cov = self.posterior_cov(x, mask)
        return mean, np.sqrt(np.diagonal(cov, axis1=1, axis2=2))

    def posterior_cov(self, x: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Closed-form posterior means ``(B, K)`` and covariance matrices ``(B, K, K)``."""
        x = np.asarray(x, dtype=float)
        if x.ndim == 2:
            x = x[None]
        m = np.ones(x.shape[:2]) if mask is None else np.asarray(mask, dtype=float).reshape(x.shape[:2])
        design = np.concatenate([np.ones(x.shape[:2] + (1,)), x[..., :-1]], axis=-1) * m[..., None]
        y = x[..., -1] * m
        k = design.shape[-1]
        prec = np.eye(k) / self.prior_sd**2 + np.einsum("bni,bnj->bij", design, design) / self.noise_sd**2
        cov = np.linalg.inv(prec)
        mean = np.einsum("bij,bj->bi", cov, np.einsum("bni,bn->bi", design, y) / self.noise_sd**2)
        return mean, cov
