"""Hierarchical diffusion decision models (Habermann et al. 2024, eq. 22 and its subject-bias variant eq. 23).

Shared bias (eq. 22), for subject ``j`` and trial ``i``:

    mu_nu ~ Normal(0.5, 0.3),   mu_alpha ~ Normal(0, 0.05),   mu_tau ~ Normal(-1, 0.3)
    log sigma_nu ~ Normal(-1, 1),  log sigma_alpha ~ Normal(-3, 1),  log sigma_tau ~ Normal(-1, 0.3)
    nu_j ~ Normal(mu_nu, sigma_nu),  log alpha_j ~ Normal(mu_alpha, sigma_alpha),
    log tau_j ~ Normal(mu_tau, sigma_tau),   beta ~ Beta(50, 50)
    (rt_ji, choice_ji) ~ Wiener(drift nu_j, boundary alpha_j, bias beta, non-decision time tau_j)

Subject bias (eq. 23): ``beta_j ~ BetaProportion(mu_beta, kappa_beta)``,
``mu_beta ~ Beta(50, 50)``, ``kappa_beta ~ Gamma(shape 5, scale 3)``.  The paper writes
``Gamma(5, 3)``; read as shape/rate (mean 1.7) it makes the subjects' bias prior U-shaped,
with biases piling up at 0 and 1 where every trial ends instantly.  We read it as
shape/scale (numpy's convention; mean 15), which centres the biases around ``mu_beta``; the
Stan program uses the same prior.

Observed rows are ``(rt, choice)`` with ``choice = 1`` for the upper boundary.  The
parameter names and priors are those of ``stan/ddm_shared_bias.stan`` and
``stan/ddm_subject_bias.stan``; local parameters are on the log scale where the prior is.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from amortbayes.models.diffusion import simulate_diffusion, wiener_log_density
from amortbayes.simulation import MultilevelModel, numpy_rng

_HYPER = ("mu_nu", "mu_alpha", "mu_tau", "log_sigma_nu", "log_sigma_alpha", "log_sigma_tau")
_HYPER_PRIOR = ((0.5, 0.3), (0.0, 0.05), (-1.0, 0.3), (-1.0, 1.0), (-3.0, 1.0), (-1.0, 0.3))


def _normal_logpdf(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)


@dataclasses.dataclass(frozen=True)
class HierarchicalDDM(MultilevelModel):
    """Hierarchical Wiener diffusion model with a shared (``bias="shared"``) or per-subject bias.

    Example:
        >>> HierarchicalDDM(bias="subject").local_parameter_names
        ('nu', 'log_alpha', 'log_tau', 'beta')
    """

    bias: str = "shared"
    n_groups: tuple[int, int] = (10, 30)
    n_obs: tuple[int, int] = (10, 100)

    data_names = ("rt", "choice")
    support_depends_on_data = True  # tau_j < every response time of subject j

    def __post_init__(self) -> None:
        if self.bias not in ("shared", "subject"):
            raise ValueError(f"bias must be 'shared' or 'subject', got {self.bias!r}")
        object.__setattr__(self, "n_groups", tuple(self.n_groups))
        object.__setattr__(self, "n_obs", tuple(self.n_obs))

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"ddm_{self.bias}_bias"

    @property
    def parameter_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return _HYPER + (("beta",) if self.bias == "shared" else ("mu_beta", "kappa_beta"))

    @property
    def parameter_support(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("real",) * 6 + (("unit",) if self.bias == "shared" else ("unit", "positive"))

    @property
    def local_parameter_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("nu", "log_alpha", "log_tau") + (("beta",) if self.bias == "subject" else ())

    @property
    def local_parameter_support(self) -> tuple[str, ...]:  # type: ignore[override]
        # log tau_j lies below the log of subject j's fastest response: draws never cross it
        return ("real", "real", "below_log_min:rt") + (("unit",) if self.bias == "subject" else ())

    def sample_global(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        cols = [loc + scale * torch.randn(n, generator=generator) for loc, scale in _HYPER_PRIOR]
        rng = numpy_rng(generator)
        cols.append(torch.from_numpy(rng.beta(50.0, 50.0, n)).float())
        if self.bias == "subject":
            cols.append(torch.from_numpy(rng.gamma(5.0, 3.0, n)).float())
        return torch.stack(cols, dim=-1)

    def sample_local(self, theta_global, n_groups, generator=None) -> torch.Tensor:
        shape = (*theta_global.shape[:-1], n_groups)
        locs = theta_global[..., :3, None]
        scales = torch.exp(theta_global[..., 3:6, None])
        z = torch.randn(*theta_global.shape[:-1], 3, n_groups, generator=generator)
        local = (locs + scales * z).movedim(-2, -1)  # (..., J, 3)
        if self.bias == "shared":
            return local
        mu, kappa = theta_global[..., 6].numpy(), theta_global[..., 7].numpy()
        rng = numpy_rng(generator)
        a = np.broadcast_to((mu * kappa)[..., None], shape)
        b = np.broadcast_to(((1 - mu) * kappa)[..., None], shape)
        beta = torch.from_numpy(rng.beta(a, b)).float().clamp(1e-4, 1 - 1e-4)
        return torch.cat([local, beta[..., None]], dim=-1)

    def _trial_parameters(self, theta_global, theta_local):
        v = theta_local[..., 0]
        a = torch.exp(theta_local[..., 1])
        tau = torch.exp(theta_local[..., 2])
        beta = theta_local[..., 3] if self.bias == "subject" else theta_global[..., None, 6].expand_as(v)
        # padded groups carry zeros; keep their (masked-out) parameters valid
        return v, a, beta.clamp(1e-6, 1 - 1e-6), tau

    def simulate_data(self, theta_global, theta_local, n_obs, generator=None, sizes=None) -> torch.Tensor:
        v, a, beta, tau = (p[..., None].expand(*p.shape, n_obs) for p in self._trial_parameters(theta_global, theta_local))
        rt, choice = simulate_diffusion(v.double(), a.double(), beta.double(), tau.double(), generator=generator)
        return torch.stack([rt, choice], dim=-1).float()

    def global_log_prior(self, theta_global) -> torch.Tensor:
        t = theta_global
        lp = sum(torch.distributions.Normal(loc, scale).log_prob(t[..., k]) for k, (loc, scale) in enumerate(_HYPER_PRIOR))
        lp = lp + torch.distributions.Beta(50.0, 50.0).log_prob(t[..., 6])  # beta, or mu_beta
        if self.bias == "subject":  # kappa_beta ~ Gamma(shape 5, scale 3), as sample_global draws it
            lp = lp + torch.distributions.Gamma(5.0, 1.0 / 3.0).log_prob(t[..., 7])
        return lp

    def local_log_prior(self, theta_global, theta_local) -> torch.Tensor:
        lp = 0.0
        for k in range(3):
            lp = lp + _normal_logpdf(theta_local[..., k], theta_global[..., None, k], torch.exp(theta_global[..., None, 3 + k]))
        if self.bias == "subject":
            mu, kappa = theta_global[..., None, 6], theta_global[..., None, 7]
            beta = torch.distributions.Beta(mu * kappa, (1 - mu) * kappa)
            lp = lp + beta.log_prob(theta_local[..., 3].clamp(1e-6, 1 - 1e-6))
        return lp

    def log_likelihood(self, theta_global, theta_local, x, mask) -> torch.Tensor:
        v, a, beta, tau = (p[..., None] for p in self._trial_parameters(theta_global, theta_local))
        # parameters stay one value per group (broadcast inside the density, checked once each)
        safe_rt = torch.where(mask > 0, x[..., 0], tau + 1.0)
        lp = wiener_log_density(safe_rt.double(), x[..., 1].double(), v.double(), a.double(), beta.double(), tau.double())
        return torch.where(mask > 0, lp, torch.zeros_like(lp)).sum(-1).to(theta_local.dtype)

    def stan_data(self, frame, group: str = "id", rt: str = "rt", choice: str = "correct") -> dict:
        """Data for ``stan/ddm_{bias}_bias.stan`` from a long frame of trials."""
        from amortbayes.reference import padded_groups

        trials = frame[[group, rt, choice]].set_axis([group, "rt", "choice"], axis=1)
        data = padded_groups(trials, group, ["rt", "choice"])
        data["choice"] = data["choice"].astype(int)
        return data
