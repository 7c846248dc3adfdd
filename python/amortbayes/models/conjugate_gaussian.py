"""Conjugate Gaussian model: unknown mean of a D-dimensional Gaussian with known noise; closed-form posterior.

    mu ~ N(m0 * 1, s0^2 I),    x_i | mu ~ N(mu, sigma^2 I),  i = 1..N

The posterior is ``N(m_N, s_N^2 I)`` with ``1/s_N^2 = 1/s0^2 + N/sigma^2`` and
``m_N = s_N^2 (m0/s0^2 + sum_i x_i / sigma^2)``; the evidence is Gaussian as well.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from amortbayes.simulation import FlatModel


@dataclasses.dataclass(frozen=True)
class ConjugateGaussian(FlatModel):
    """Unknown mean ``mu`` (``dim`` components) of Gaussian data with known ``noise_sd``.

    Example:
        >>> model = ConjugateGaussian(dim=2)
        >>> model.parameter_names
        ('mu[1]', 'mu[2]')
    """

    dim: int = 2
    prior_mean: float = 0.0
    prior_sd: float = 1.0
    noise_sd: float = 1.0
    n_obs: tuple[int, int] = (2, 40)

    name = "conjugate_gaussian"

    def __post_init__(self) -> None:
        if self.dim < 1 or self.prior_sd <= 0 or self.noise_sd <= 0:
            raise ValueError("ConjugateGaussian needs dim >= 1 and positive standard deviations")
        object.__setattr__(self, "n_obs", tuple(self.n_obs))

    @property
    def parameter_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(f"mu[{i + 1}]" for i in range(self.dim))

    @property
    def data_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(f"y{i + 1}" for i in range(self.dim))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.prior_mean + self.prior_sd * torch.randn(n, self.dim, generator=generator)

    def simulate_data(self, theta, n_obs, generator=None) -> torch.Tensor:
        noise = torch.randn(theta.shape[0], n_obs, self.dim, generator=generator)
        return theta[:, None, :] + self.noise_sd * noise

    def posterior(self, x: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Closed-form posterior means ``(B, D)`` and standard deviations ``(B, D)``."""
        x = np.asarray(x, dtype=float)
        if x.ndim == 2:
            x = x[None]
        m = np.ones(x.shape[:2]) if mask is None else np.asarray(mask, dtype=float).reshape(x.shape[:2])
        n = m.sum(1, keepdims=True)
        prec = 1.0 / self.prior_sd**2 + n / self.noise_sd**2
        mean = (self.prior_mean / self.prior_sd**2 + (x * m[..., None]).sum(1) / self.noise_sd**2) / prec
        return mean, np.broadcast_to(np.sqrt(1.0 / prec), mean.shape).copy()

    def log_evidence(self, x: np.ndarray) -> float:
        """Exact ``log p(x)`` of one data set ``(N, D)`` (components are independent)."""
        x = np.asarray(x, dtype=float)
        n = x.shape[0]
        total = 0.0
        for d in range(self.dim):
            cov = self.noise_sd**2 * np.eye(n) + self.prior_sd**2 * np.ones((n, n))
            r = x[:, d] - self.prior_mean
            _, logdet = np.linalg.slogdet(cov)
            total += -0.5 * (n * np.log(2 * np.pi) + logdet + r @ np.linalg.solve(cov, r))
        return float(total)

    def log_prior(self, theta) -> torch.Tensor:
        """``log p(mu)`` of parameter values ``(M, D)``, ``(M,)``."""
        t = torch.as_tensor(theta, dtype=torch.float64)
        z = (t - self.prior_mean) / self.prior_sd
        return (-0.5 * z * z - math.log(self.prior_sd) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def log_likelihood_rows(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Exact ``log p(x_i | mu)`` of each row of one data set ``x (N, D)`` at each ``theta (M, D)``: ``(M, N)``."""
        x, t = np.asarray(x, dtype=float), np.asarray(theta, dtype=float)
        z = (x[None] - t[:, None]) / self.noise_sd
        return (-0.5 * z * z - math.log(self.noise_sd) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def loo_log_predictive(self, x: np.ndarray) -> np.ndarray:
        """Exact leave-one-out ``log p(x_i | x_-i)`` of each row of one data set ``x (N, D)``, ``(N,)``."""
        x = np.asarray(x, dtype=float)
        n = x.shape[0]
        rest = (x.sum(0)[None] - x)  # (N, D): sums of the other rows
        prec = 1.0 / self.prior_sd**2 + (n - 1) / self.noise_sd**2
        mean = (self.prior_mean / self.prior_sd**2 + rest / self.noise_sd**2) / prec
        var = 1.0 / prec + self.noise_sd**2
        return (-0.5 * (x - mean) ** 2 / var - 0.5 * np.log(2 * np.pi * var)).sum(-1)
