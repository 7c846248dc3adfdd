"""The simulators of the SLCP, Bernoulli GLM, AR(1) and Gaussian-mixture benchmark tasks.

Four :class:`amortbayes.simulation.FlatModel` dataclasses; the tasks built on them, their
summary networks and reference posterior samplers are in :mod:`_sbi_tasks`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from amortbayes.simulation import FlatModel, numpy_rng

__all__ = ["AR1Series", "BernoulliGLM", "GaussianMixture", "SLCP"]



@dataclasses.dataclass(frozen=True)
class SLCP(FlatModel):
    """Simple likelihood, complex posterior: a bivariate Gaussian with 5 parameters, ``n_obs`` i.i.d. rows."""

    n_obs: tuple[int, int] = (4, 4)
    bound: float = 3.0

    name = "slcp"
    parameter_names = tuple(f"theta[{i}]" for i in range(1, 6))
    data_names = ("x1", "x2")

    @property
    def parameter_support(self) -> tuple[str, ...]:  # type: ignore[override]
        return (f"interval:{-self.bound:g}:{self.bound:g}",) * 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_obs", tuple(self.n_obs))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.bound * (2.0 * torch.rand(n, 5, generator=generator) - 1.0)

    def simulate_data(self, theta, n_obs, generator=None) -> torch.Tensor:
        s1, s2, rho = theta[:, 2] ** 2, theta[:, 3] ** 2, torch.tanh(theta[:, 4])
        e = torch.randn(theta.shape[0], n_obs, 2, generator=generator)
        x1 = theta[:, None, 0] + s1[:, None] * e[..., 0]
        x2 = theta[:, None, 1] + (s2 * rho)[:, None] * e[..., 0] + (s2 * torch.sqrt(1 - rho**2))[:, None] * e[..., 1]
        return torch.stack([x1, x2], dim=-1)


@dataclasses.dataclass(frozen=True)
class BernoulliGLM(FlatModel):
    """Logistic GLM with a fixed design of ``n_trials`` x (1 + ``n_lags``), observed through the summary ``X'y``.

    The design is an intercept and the lags 0..n_lags-1 of a white-noise N(0, 1) stimulus
    drawn with ``numpy.random.default_rng(design_seed)``.  Prior: intercept ~ N(0,
    ``intercept_sd``^2), filter ~ N(0, ``filter_sd``^2 R) with ``R_ij = filter_corr^|i-j|``.
    Each row of a data set is the ``X'y`` of one independent experiment (``n_obs = (1, 1)``:
    one experiment per data set).
    """

    n_trials: int = 100
    n_lags: int = 9
    design_seed: int = 20210
    intercept_sd: float = math.sqrt(2.0)
    filter_sd: float = 0.5
    filter_corr: float = 0.8
    n_obs: tuple[int, int] = (1, 1)

    name = "bernoulli_glm"
    parameter_support = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_obs", tuple(self.n_obs))

    @property
    def parameter_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("beta[0]",) + tuple(f"beta[{k}]" for k in range(1, self.n_lags + 1))

    @property
    def data_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(f"xty[{k}]" for k in range(self.n_lags + 1))

    def design(self) -> np.ndarray:
        """The fixed design matrix ``(n_trials, 1 + n_lags)``: intercept, stimulus at lags 0..n_lags-1."""
        u = np.random.default_rng(self.design_seed).normal(size=self.n_trials + self.n_lags - 1)
        t = np.arange(self.n_trials)[:, None] + (self.n_lags - 1) - np.arange(self.n_lags)[None, :]
        return np.concatenate([np.ones((self.n_trials, 1)), u[t]], axis=1)

    def prior_cov(self) -> np.ndarray:
        lag = np.abs(np.arange(self.n_lags)[:, None] - np.arange(self.n_lags)[None, :])
        cov = np.zeros((self.n_lags + 1, self.n_lags + 1))
        cov[0, 0] = self.intercept_sd**2
        cov[1:, 1:] = self.filter_sd**2 * self.filter_corr**lag
        return cov

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        chol = torch.from_numpy(np.linalg.cholesky(self.prior_cov())).float()
        return torch.randn(n, self.n_lags + 1, generator=generator) @ chol.T

    def simulate_data(self, theta, n_obs, generator=None) -> torch.Tensor:
        X = torch.from_numpy(self.design()).float()
        p = torch.sigmoid(theta.float() @ X.T)  # (B, T)
        y = (torch.rand(theta.shape[0], n_obs, self.n_trials, generator=generator) < p[:, None, :]).float()
        return y @ X  # (B, n_obs, 1 + n_lags)


@dataclasses.dataclass(frozen=True)
class AR1Series(FlatModel):
    """One AR(1) series ``x_t = c + phi x_{t-1} + sigma e_t`` from ``x_0 = 0`` with a truncated NIG prior.

    ``sigma^2 ~ InvGamma(a0, b0)``, ``(c, phi) | sigma^2 ~ N(0, sigma^2 diag(v0))``, the joint
    truncated to ``|phi| < 1``.  Rows of a data set are ``x_1..x_T`` in time order.
    """

    a0: float = 3.0
    b0: float = 2.0
    v0: tuple[float, float] = (1.0, 0.25)
    n_obs: tuple[int, int] = (50, 50)

    name = "ar1"
    parameter_names = ("c", "phi", "sigma")
    data_names = ("x",)
    parameter_support = ("real", "correlation", "positive")

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_obs", tuple(self.n_obs))
        object.__setattr__(self, "v0", tuple(float(v) for v in self.v0))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        # rejection of whole (c, phi, sigma^2) draws: the truncation is of the joint prior, so
        # sigma^2 is redrawn too (keeping it would leave sigma^2 ~ InvGamma, a different prior)
        rng = numpy_rng(generator)
        out = torch.empty(n, 3)
        todo = torch.arange(n)
        while todo.numel():
            m = todo.numel()
            sigma2 = torch.from_numpy(self.b0 / rng.gamma(self.a0, 1.0, m)).float()
            cphi = torch.sqrt(sigma2[:, None] * torch.tensor(self.v0)[None, :]) * torch.randn(m, 2, generator=generator)
            out[todo] = torch.cat([cphi, torch.sqrt(sigma2)[:, None]], dim=1)
            todo = todo[cphi[:, 1].abs() >= 1]
        return out

    def simulate_data(self, theta, n_obs, generator=None) -> torch.Tensor:
        c, phi, sigma = theta[:, 0], theta[:, 1], theta[:, 2]
        e = torch.randn(theta.shape[0], n_obs, generator=generator)
        prev = torch.zeros(theta.shape[0])
        out = []
        for t in range(n_obs):
            prev = c + phi * prev + sigma * e[:, t]
            out.append(prev)
        return torch.stack(out, dim=1)[..., None]


@dataclasses.dataclass(frozen=True)
class GaussianMixture(FlatModel):
    """``theta ~ U(-bound, bound)^2``, each row ``x ~ 0.5 N(theta, I) + 0.5 N(theta, 0.01 I)``."""

    n_obs: tuple[int, int] = (1, 1)
    bound: float = 10.0

    name = "gaussian_mixture"
    parameter_names = ("theta[1]", "theta[2]")
    data_names = ("x1", "x2")
    scales = (1.0, 0.1)

    @property
    def parameter_support(self) -> tuple[str, ...]:  # type: ignore[override]
        return (f"interval:{-self.bound:g}:{self.bound:g}",) * 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_obs", tuple(self.n_obs))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.bound * (2.0 * torch.rand(n, 2, generator=generator) - 1.0)

    def simulate_data(self, theta, n_obs, generator=None) -> torch.Tensor:
        b = theta.shape[0]
        narrow = torch.rand(b, n_obs, 1, generator=generator) < 0.5
        scale = torch.where(narrow, torch.tensor(self.scales[1]), torch.tensor(self.scales[0]))
        return theta[:, None, :] + scale * torch.randn(b, n_obs, 2, generator=generator)
