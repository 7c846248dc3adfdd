"""Two moons: a 2-D model with a bimodal, crescent-shaped posterior and an exact reference sampler.

    theta ~ U(-1, 1)^2,  a ~ U(-pi/2, pi/2),  r ~ N(0.1, 0.01^2),
    x = (r cos a + 0.25, r sin a) + (-|theta_1 + theta_2| / sqrt 2, (-theta_1 + theta_2) / sqrt 2)

The map ``theta -> x`` given ``(a, r)`` is piecewise linear with unit Jacobian and two
branches (the sign of ``theta_1 + theta_2``), so exact posterior draws follow from drawing
``(a, r)``, solving for both branches, picking one at random and keeping draws inside the
prior box.

References:
    Greenberg, Nonnenmacher & Macke (2019). Automatic posterior transformation for
    likelihood-free inference. ICML.
    Lueckmann et al. (2021). Benchmarking simulation-based inference. AISTATS.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from amortbayes.simulation import FlatModel


@dataclasses.dataclass(frozen=True)
class TwoMoons(FlatModel):
    """The two-moons benchmark (one observation of two features per data set).

    Example:
        >>> TwoMoons().parameter_names
        ('theta[1]', 'theta[2]')
    """

    n_obs: tuple[int, int] = (1, 1)

    name = "two_moons"
    parameter_names = ("theta[1]", "theta[2]")
    data_names = ("x1", "x2")

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_obs", tuple(self.n_obs))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return 2.0 * torch.rand(n, 2, generator=generator) - 1.0

    def simulate_data(self, theta, n_obs, generator=None) -> torch.Tensor:
        b = theta.shape[0]
        a = math.pi * (torch.rand(b, n_obs, generator=generator) - 0.5)
        r = 0.1 + 0.01 * torch.randn(b, n_obs, generator=generator)
        px = r * torch.cos(a) + 0.25
        py = r * torch.sin(a)
        t1, t2 = theta[:, None, 0], theta[:, None, 1]
        x1 = px - (t1 + t2).abs() / math.sqrt(2.0)
        x2 = py + (-t1 + t2) / math.sqrt(2.0)
        return torch.stack([x1, x2], dim=-1)

    def reference_posterior(self, x: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
        """Exact posterior draws ``(n, 2)`` for one observation ``x`` of shape ``(2,)`` or ``(1, 2)``."""
        x = np.asarray(x, dtype=float).reshape(-1)
        if x.shape != (2,):
            raise ValueError(f"two moons has one observation of 2 features, got shape {x.shape}")
        rng = np.random.default_rng(seed)
        out: list[np.ndarray] = []
        got = 0
        for _ in range(1000):
            m = max(4 * n, 1000)
            a = rng.uniform(-np.pi / 2, np.pi / 2, m)
            r = rng.normal(0.1, 0.01, m)
            p = np.stack([r * np.cos(a) + 0.25, r * np.sin(a)], axis=1)
            s = -np.sqrt(2.0) * (x[0] - p[:, 0])  # |theta1 + theta2|
            d = np.sqrt(2.0) * (x[1] - p[:, 1])  # theta2 - theta1
            sign = rng.choice([-1.0, 1.0], m)
            total = sign * s
            th = np.stack([(total - d) / 2.0, (total + d) / 2.0], axis=1)
            ok = (s >= 0) & np.all(np.abs(th) <= 1.0, axis=1)
            out.append(th[ok])
            got += int(ok.sum())
            if got >= n:
                break
        draws = np.concatenate(out)
        if draws.shape[0] < n:
            raise ValueError(f"observation {x.tolist()} has (almost) no posterior mass under the prior")
        return draws[:n]
