"""Hierarchical linear regression with correlated varying intercepts and slopes (the ``sleepstudy`` design).

brms: ``y ~ x + (x | group)``.  For group ``j`` and observation ``i``:

    y_ij ~ Normal(b_Intercept + r_Intercept[j] + (b_x + r_x[j]) x_ij, sigma)
    (r_Intercept[j], r_x[j]) ~ MVN(0, diag(sd) Omega diag(sd)),  Omega = [[1, cor], [cor, 1]]
    b_Intercept ~ Normal(250, 50),  b_x ~ Normal(10, 10)
    sd_Intercept ~ Normal+(0, 40),  sd_x ~ Normal+(0, 10),  sigma ~ Normal+(0, 50)
    Omega ~ LKJ(2), i.e. (cor + 1) / 2 ~ Beta(2, 2)

The default prior scales suit ``sleepstudy`` (reaction times in ms against days of sleep
deprivation) and are the same data passed to ``stan/hierarchical_linear.stan``.  The
covariate comes from one of two designs.  A data set whose groups all have the same size
``N`` (a fraction ``balanced_designs`` of them, and the rare others drawn so) has the same
evenly spaced covariate values ``x_range[0] .. x_range[1]`` in every group (``Days = 0..9``
of sleepstudy); in the others it is drawn uniformly on ``x_range`` for every row.  Without
the balanced designs, data like sleepstudy's (identical covariates in every group) lay
outside everything the amortizer was trained on.  Global parameters are the fixed effects, the group-level SDs, the
correlation and sigma; local parameters are the group offsets ``r_Intercept``, ``r_x``.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from amortbayes.simulation import MultilevelModel, numpy_rng


def _half_normal(scale: float, n: int, generator) -> torch.Tensor:
    return scale * torch.randn(n, generator=generator).abs()


@dataclasses.dataclass(frozen=True)
class HierarchicalLinear(MultilevelModel):
    """Varying intercepts and slopes with an LKJ-correlated group-level covariance.

    Example:
        >>> model = HierarchicalLinear()
        >>> model.parameter_names[:3]
        ('b_Intercept', 'b_x', 'sd_Intercept')
    """

    b_intercept_loc: float = 250.0
    b_intercept_scale: float = 50.0
    b_x_loc: float = 10.0
    b_x_scale: float = 10.0
    sd_intercept_scale: float = 40.0
    sd_x_scale: float = 10.0
    sigma_scale: float = 50.0
    lkj_eta: float = 2.0
    x_range: tuple[float, float] = (0.0, 9.0)
    n_groups: tuple[int, int] = (4, 40)
    n_obs: tuple[int, int] = (2, 20)
    balanced_designs: float = 0.5

    name = "hierarchical_linear"
    parameter_names = ("b_Intercept", "b_x", "sd_Intercept", "sd_x", "cor_Intercept_x", "sigma")
    parameter_support = ("real", "real", "positive", "positive", "correlation", "positive")
    local_parameter_names = ("r_Intercept", "r_x")
    local_parameter_support = ("real", "real")
    data_names = ("x", "y")
    gaussian_local_posterior = True  # Gaussian prior and likelihood, linear in theta_j

    def __post_init__(self) -> None:
        for f in ("x_range", "n_groups", "n_obs"):
            object.__setattr__(self, f, tuple(getattr(self, f)))
        if not 0.0 <= self.balanced_designs <= 1.0:
            raise ValueError(f"balanced_designs is a fraction in [0, 1], got {self.balanced_designs}")
        if self.lkj_eta <= 0 or min(self.b_intercept_scale, self.b_x_scale, self.sd_intercept_scale,
                                    self.sd_x_scale, self.sigma_scale) <= 0:
            raise ValueError("HierarchicalLinear needs positive prior scales and lkj_eta > 0")

    def stan_data(self) -> dict[str, float]:
        """The prior hyperparameters as ``stan/hierarchical_linear.stan`` expects them."""
        return {
            "b_Intercept_loc": self.b_intercept_loc,
            "b_Intercept_scale": self.b_intercept_scale,
            "b_x_loc": self.b_x_loc,
            "b_x_scale": self.b_x_scale,
            "sd_Intercept_scale": self.sd_intercept_scale,
            "sd_x_scale": self.sd_x_scale,
            "sigma_scale": self.sigma_scale,
            "lkj_eta": self.lkj_eta,
        }

    def sample_global(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        b0 = self.b_intercept_loc + self.b_intercept_scale * torch.randn(n, generator=generator)
        b1 = self.b_x_loc + self.b_x_scale * torch.randn(n, generator=generator)
        sd0 = _half_normal(self.sd_intercept_scale, n, generator)
        sd1 = _half_normal(self.sd_x_scale, n, generator)
        rng = numpy_rng(generator)
        cor = torch.from_numpy(2.0 * rng.beta(self.lkj_eta, self.lkj_eta, n) - 1.0).float()
        sigma = _half_normal(self.sigma_scale, n, generator)
        return torch.stack([b0, b1, sd0, sd1, cor, sigma], dim=-1)

    def global_log_prior(self, theta_global: torch.Tensor) -> torch.Tensor:
        """``log p`` of the fixed effects, group-level SDs, correlation and sigma (the priors above)."""
        t = theta_global
        dist = torch.distributions
        lp = dist.Normal(self.b_intercept_loc, self.b_intercept_scale).log_prob(t[..., 0])
        lp = lp + dist.Normal(self.b_x_loc, self.b_x_scale).log_prob(t[..., 1])
        lp = lp + dist.HalfNormal(self.sd_intercept_scale).log_prob(t[..., 2])
        lp = lp + dist.HalfNormal(self.sd_x_scale).log_prob(t[..., 3])
        # LKJ(eta) of a 2 x 2 correlation matrix: (cor + 1) / 2 ~ Beta(eta, eta)
        lp = lp + dist.Beta(self.lkj_eta, self.lkj_eta).log_prob((t[..., 4] + 1) / 2) - math.log(2.0)
        return lp + dist.HalfNormal(self.sigma_scale).log_prob(t[..., 5])

    def _scale_tril(self, theta_global: torch.Tensor) -> torch.Tensor:
        sd0, sd1, cor = theta_global[..., 2], theta_global[..., 3], theta_global[..., 4]
        zero = torch.zeros_like(sd0)
        row0 = torch.stack([sd0, zero], -1)
        row1 = torch.stack([cor * sd1, sd1 * torch.sqrt((1 - cor**2).clamp_min(1e-12))], -1)
        return torch.stack([row0, row1], -2)

    def sample_local(self, theta_global, n_groups, generator=None) -> torch.Tensor:
        z = torch.randn(*theta_global.shape[:-1], n_groups, 2, generator=generator)
        chol = self._scale_tril(theta_global)  # (..., 2, 2)
        return torch.einsum("...ab,...jb->...ja", chol, z)

    def _mean(self, theta_global, theta_local, x):
        b0 = theta_global[..., None, None, 0] + theta_local[..., :, None, 0]
        b1 = theta_global[..., None, None, 1] + theta_local[..., :, None, 1]
        return b0 + b1 * x

    def simulate_data(self, theta_global, theta_local, n_obs, generator=None, sizes=None) -> torch.Tensor:
        b, j = theta_local.shape[:2]
        lo, hi = self.x_range
        x = lo + (hi - lo) * torch.rand(b, j, n_obs, generator=generator)
        if sizes is not None and self.balanced_designs > 0:
            # balanced data sets (all groups of one size N): the evenly spaced design lo..hi
            n = sizes.amax(1)
            balanced = ((sizes == n[:, None]) | (sizes == 0)).all(1) & (n > 1)  # padded groups have size 0
            grid = lo + (hi - lo) * torch.arange(n_obs) / (n[:, None] - 1).clamp_min(1)  # (B, n_obs)
            x = torch.where(balanced[:, None, None], grid[:, None, :].expand(b, j, n_obs), x)
        sigma = theta_global[:, None, None, 5]
        y = self._mean(theta_global, theta_local, x) + sigma * torch.randn(b, j, n_obs, generator=generator)
        return torch.stack([x, y], dim=-1)

    def local_log_prior(self, theta_global, theta_local) -> torch.Tensor:
        # the bivariate normal in closed form (whitened by its Cholesky factor); a batched
        # MultivariateNormal costs a triangular solve per draw and dominates importance sampling
        sd0, sd1, cor = (theta_global[..., None, k] for k in (2, 3, 4))
        root = torch.sqrt((1 - cor**2).clamp_min(1e-12))
        z0 = theta_local[..., 0] / sd0
        z1 = (theta_local[..., 1] - cor * sd1 * z0) / (sd1 * root)
        return -0.5 * (z0**2 + z1**2) - torch.log(sd0 * sd1 * root) - math.log(2 * math.pi)

    def log_likelihood(self, theta_global, theta_local, x, mask) -> torch.Tensor:
        mean = self._mean(theta_global, theta_local, x[..., 0])
        sigma = theta_global[..., None, None, 5]
        lp = -0.5 * ((x[..., 1] - mean) / sigma) ** 2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)
        return (lp * mask).sum(-1)

    def group_log_marginal(self, theta_global: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(y_k | x_k, globals)`` of one group, its offsets integrated out, ``(...,)``.

        Given the globals the group's responses are jointly ``MVN(b_Intercept + b_x x,
        X Sigma X' + sigma^2 I)`` with ``X = [1, x]``; ``x (N, 2)`` holds the group's rows
        ``(x, y)`` and ``mask (N,)`` marks the observed ones.  Closed-form reference for
        leave-one-group-out predictive densities (averaged over a posterior of the globals
        given the other groups).

        Example:
            >>> model = HierarchicalLinear()
            >>> theta = torch.tensor([[250.0, 10.0, 1e-3, 1e-3, 0.0, 25.0]])
            >>> rows = torch.tensor([[0.0, 250.0], [1.0, 260.0]])
            >>> lp = model.group_log_marginal(theta, rows, torch.ones(2))
            >>> round(lp.item(), 3) == round(2 * (-math.log(25.0) - 0.5 * math.log(2 * math.pi)), 3)
            True
        """
        theta_global = theta_global.double()  # float64: importance_draws calls it at far-off proposals too
        rows = x[mask > 0].to(theta_global.dtype)
        design = torch.stack([torch.ones_like(rows[:, 0]), rows[:, 0]], -1)  # (N, 2)
        chol = self._scale_tril(theta_global)  # (..., 2, 2)
        loading = design @ chol  # (..., N, 2)
        sigma = theta_global[..., 5]
        cov = loading @ loading.transpose(-1, -2) + sigma[..., None, None] ** 2 * torch.eye(len(rows), dtype=rows.dtype)
        mean = theta_global[..., None, 0] + theta_global[..., None, 1] * rows[:, 0]
        L, info = torch.linalg.cholesky_ex(cov)
        z = torch.linalg.solve_triangular(L, (rows[:, 1] - mean)[..., None], upper=False)[..., 0]
        lp = -0.5 * (z * z).sum(-1) - torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1) \
            - 0.5 * len(rows) * math.log(2 * math.pi)
        return torch.where(info > 0, torch.full_like(lp, -math.inf), lp)  # a covariance singular in floats: no mass

