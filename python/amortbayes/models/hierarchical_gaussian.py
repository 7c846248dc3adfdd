"""Two-level Gaussian model with known variances: closed-form posteriors at both levels and exact pooling.

    mu ~ Normal(0, s_mu),   theta_j | mu ~ Normal(mu, tau),   y_ji | theta_j ~ Normal(theta_j, sigma)

With group means ``ybar_j`` and ``v_j = tau^2 + sigma^2 / n_j``, the groups' means are
independent ``Normal(mu, v_j)`` given ``mu``, so

    mu | y ~ Normal(m, s^2),   1/s^2 = 1/s_mu^2 + sum_j 1/v_j,   m = s^2 sum_j ybar_j / v_j,

and ``theta_j | mu, y ~ Normal(c_j (mu / tau^2 + n_j ybar_j / sigma^2), c_j)`` with
``1/c_j = 1/tau^2 + n_j/sigma^2``; integrating ``mu`` out keeps it Gaussian.  The exact
pooling factor (Gelman & Hill 2006) is ``lambda_j = Var(theta_j - mu | y) / tau^2``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from amortbayes.simulation import MultilevelModel


@dataclasses.dataclass(frozen=True)
class HierarchicalGaussian(MultilevelModel):
    """Group means ``theta_j`` around a global mean ``mu``, both Gaussian with known scales.

    Example:
        >>> HierarchicalGaussian().local_parameter_names
        ('theta',)
    """

    mu_sd: float = 1.0
    tau: float = 0.5
    sigma: float = 1.0
    n_groups: tuple[int, int] = (2, 30)
    n_obs: tuple[int, int] = (1, 20)

    name = "hierarchical_gaussian"
    parameter_names = ("mu",)
    local_parameter_names = ("theta",)
    data_names = ("y",)
    gaussian_local_posterior = True  # Gaussian prior and likelihood, linear in theta_j

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_groups", tuple(self.n_groups))
        object.__setattr__(self, "n_obs", tuple(self.n_obs))
        if min(self.mu_sd, self.tau, self.sigma) <= 0:
            raise ValueError("HierarchicalGaussian needs positive mu_sd, tau and sigma")

    def sample_global(self, n, generator=None):
        return self.mu_sd * torch.randn(n, 1, generator=generator)

    def sample_local(self, theta_global, n_groups, generator=None):
        z = torch.randn(*theta_global.shape[:-1], n_groups, 1, generator=generator)
        return theta_global[..., None, :] + self.tau * z

    def simulate_data(self, theta_global, theta_local, n_obs, generator=None, sizes=None):
        b, j = theta_local.shape[:2]
        noise = torch.randn(b, j, n_obs, 1, generator=generator)
        return theta_local[:, :, None, :] + self.sigma * noise

    def global_log_prior(self, theta_global):
        return torch.distributions.Normal(0.0, self.mu_sd).log_prob(theta_global[..., 0])

    def local_log_prior(self, theta_global, theta_local):
        z = (theta_local[..., 0] - theta_global[..., None, 0]) / self.tau
        return -0.5 * z**2 - math.log(self.tau) - 0.5 * math.log(2 * math.pi)

    def log_likelihood(self, theta_global, theta_local, x, mask):
        z = (x[..., 0] - theta_local[..., None, 0]) / self.sigma
        lp = -0.5 * z**2 - math.log(self.sigma) - 0.5 * math.log(2 * math.pi)
        return (lp * mask).sum(-1)

    def posterior(self, x: np.ndarray, mask: np.ndarray, group_mask: np.ndarray) -> dict[str, np.ndarray]:
        """Exact posterior moments for padded data ``x (B, J, N, 1)``.

        Returns ``mu_mean, mu_sd`` ``(B,)``, ``theta_mean, theta_sd, pooling`` ``(B, J)``
        (NaN for padded groups).
        """
        x = np.asarray(x, float)[..., 0]
        m = np.asarray(mask, float)
        g = np.asarray(group_mask, float) > 0
        n = np.maximum(m.sum(-1), 1.0)
        ybar = (x * m).sum(-1) / n
        v = self.tau**2 + self.sigma**2 / n
        prec_mu = 1.0 / self.mu_sd**2 + np.where(g, 1.0 / v, 0.0).sum(-1)
        var_mu = 1.0 / prec_mu
        mean_mu = var_mu * np.where(g, ybar / v, 0.0).sum(-1)
        c = 1.0 / (1.0 / self.tau**2 + n / self.sigma**2)
        a = c / self.tau**2  # weight of mu in E[theta_j | mu, y]
        theta_mean = a * mean_mu[:, None] + c * n * ybar / self.sigma**2
        theta_var = c + a**2 * var_mu[:, None]
        # Var(theta_j - mu | y) = c + (a - 1)^2 Var(mu | y)
        pooling = (c + (a - 1.0) ** 2 * var_mu[:, None]) / self.tau**2
        nan = np.where(g, 1.0, np.nan)
        return {
            "mu_mean": mean_mu,
            "mu_sd": np.sqrt(var_mu),
            "theta_mean": theta_mean * nan,
            "theta_sd": np.sqrt(theta_var) * nan,
            "pooling": pooling * nan,
        }

    def logo_elpd(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Exact ``log p(x_k | x_{-k})`` for every group ``k`` of one data set ``x (J, N, 1)``.

        Given the other groups, ``mu ~ Normal(m, s^2)`` (their exact posterior), so the left-out
        group's rows are jointly ``MVN(m 1, sigma^2 I + (tau^2 + s^2) 1 1')``.
        """
        x = np.asarray(x, float)[..., 0]
        mask = np.asarray(mask, float)
        j = x.shape[0]
        out = np.empty(j)
        for k in range(j):
            keep = np.ones(j, bool)
            keep[k] = False
            post = self.posterior(x[None, keep, :, None], mask[None, keep], np.ones((1, j - 1)))
            m, s2 = post["mu_mean"][0], post["mu_sd"][0] ** 2
            rows = x[k][mask[k] > 0]
            n = rows.size
            cov = self.sigma**2 * np.eye(n) + (self.tau**2 + s2) * np.ones((n, n))
            r = rows - m
            _, logdet = np.linalg.slogdet(cov)
            out[k] = -0.5 * (n * np.log(2 * np.pi) + logdet + r @ np.linalg.solve(cov, r))
        return out
