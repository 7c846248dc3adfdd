"""The Gaussian linear benchmark: one observation of ``dim`` features whose posterior is Gaussian and linear in the data.

    theta ~ N(0, prior_var I_dim),   x | theta ~ N(theta, noise_var I_dim)   (one row of ``dim`` features)

The posterior is ``N(w x, s2 I)`` with ``w = prior_var / (prior_var + noise_var)`` and
``s2 = w noise_var``: a posterior linear Gaussian by construction, so the KL of any data
perturbation ``delta`` is ``0.5 w^2 |delta|^2 / s2`` and the worst case within an L2 ball of
radius ``eps`` is ``0.5 eps^2 w^2 / s2`` (in the data's own units).  The robustness benchmark's
linear model (Lueckmann et al. 2021 use ``dim = 10``, variances 0.1).

References:
    Lueckmann, Boelts, Greenberg, Gonçalves & Macke (2021). Benchmarking simulation-based
    inference. AISTATS.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from amortbayes.simulation import FlatModel


@dataclasses.dataclass(frozen=True)
class GaussianLinear(FlatModel):
    """``dim`` means observed once with Gaussian noise (see the module docstring).

    Example:
        >>> m = GaussianLinear(dim=3)
        >>> m.data_names, m.posterior(np.ones((1, 3)))[0].round(2).tolist()
        (('x1', 'x2', 'x3'), [[0.5, 0.5, 0.5]])
    """

    dim: int = 10
    prior_var: float = 0.1
    noise_var: float = 0.1
    n_obs: tuple[int, int] = (1, 1)

    name = "gaussian_linear_vector"

    def __post_init__(self) -> None:
        if int(self.dim) < 1 or self.prior_var <= 0 or self.noise_var <= 0:
            raise ValueError("GaussianLinear needs dim >= 1 and positive variances")
        if tuple(self.n_obs) != (1, 1):
            raise ValueError("GaussianLinear has one observation per data set: n_obs=(1, 1)")
        object.__setattr__(self, "n_obs", (1, 1))

    @property
    def parameter_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(f"theta[{k + 1}]" for k in range(self.dim))

    @property
    def data_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(f"x{k + 1}" for k in range(self.dim))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.prior_var**0.5 * torch.randn(n, self.dim, generator=generator)

    def simulate_data(self, theta, n_obs, generator=None) -> torch.Tensor:
        noise = torch.randn(theta.shape[0], n_obs, self.dim, generator=generator)
        return theta[:, None, :] + self.noise_var**0.5 * noise

    @property
    def weight(self) -> float:
        """``w``: the posterior mean is ``w x``."""
        return self.prior_var / (self.prior_var + self.noise_var)

    def posterior(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means ``(B, dim)`` and standard deviations ``(B, dim)`` of observations ``(B, dim)`` or ``(B, 1, dim)``."""
        x = np.asarray(x, dtype=float).reshape(-1, self.dim)
        return self.weight * x, np.full_like(x, (self.weight * self.noise_var) ** 0.5)

    def worst_case_kl(self, eps: float, data_sd: float | None = None) -> float:
        """The exact posterior's largest KL under a perturbation of L2 norm ``eps``, in units of ``data_sd`` (default: raw units)."""
        scale = 1.0 if data_sd is None else float(data_sd)
        return 0.5 * (float(eps) * scale) ** 2 * self.weight**2 / (self.weight * self.noise_var)
