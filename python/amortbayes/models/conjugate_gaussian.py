"""Conjugate Gaussian model: unknown mean of a D-dimensional Gaussian with known noise; closed-form posterior.

    mu ~ N(m0 * 1, s0^2 I),    x_i | mu ~ N(mu, sigma^2 I),  i = 1..N

The posterior is ``N(m_N, s_N^2 I)`` with ``1/s_N^2 = 1/s0^2 + N/sigma^2`` and
``m_N = s_N^2 (m0/s0^2 + sum_i x_i / sigma^2)``; the evidence is Gaussian as well.

**Contexts** (:mod:`amortbayes.sensitivity`): ``contexts={"alpha": power_scale("prior"),
"beta": power_scale("likelihood"), "likelihood": choice("normal", "student_t"),
"prior_family": choice("normal", "student_t", of="prior")}`` (any subset, any names) trains one
amortizer over the whole family.  The normal prior to the power ``alpha`` is
``N(m0, s0^2 / alpha)``; each normal row's likelihood to the power ``beta`` is
``N(mu, sigma^2 / beta)``.  Student-t densities (``student_df = nu``, location-scale, each
component independent) to a power ``p`` are Student-t with ``nu' = p (nu + 1) - 1`` degrees of
freedom and scale ``* sqrt(nu / nu')`` (so ``p`` must exceed ``1 / (nu + 1)``), for the prior
(``prior="student_t"``, scale ``s0``) and the rows (``likelihood="student_t"``, scale
``sigma``); all are simulated exactly.  With a normal prior and likelihood the posterior stays
in closed form (:meth:`ConjugateGaussian.posterior` takes the powers); any combination has its
posterior moments by quadrature (:meth:`ConjugateGaussian.posterior_quadrature`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from amortbayes.sensitivity import ContextSpace
from amortbayes.simulation import FlatModel, numpy_rng

FAMILIES = ("normal", "student_t")


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
    contexts: dict | None = dataclasses.field(default=None, metadata={"omit_default": True})
    student_df: float = dataclasses.field(default=3.0, metadata={"omit_default": True})
    # or "student_t" (a choice context overrides it per data set)
    likelihood: str = dataclasses.field(default="normal", metadata={"omit_default": True})
    prior: str = dataclasses.field(default="normal", metadata={"omit_default": True})

    name = "conjugate_gaussian"

    def __post_init__(self) -> None:
        if self.dim < 1 or self.prior_sd <= 0 or self.noise_sd <= 0 or self.student_df <= 0:
            raise ValueError("ConjugateGaussian needs dim >= 1, positive standard deviations and student_df > 0")
        object.__setattr__(self, "n_obs", tuple(self.n_obs))
        for part in ("likelihood", "prior"):
            if getattr(self, part) not in FAMILIES:
                raise ValueError(f"ConjugateGaussian {part} must be 'normal' or 'student_t', got {getattr(self, part)!r}")
        space = ContextSpace(self.contexts)
        for name, d in space.spec.items():
            if "choices" in d and not set(d["choices"]) <= set(FAMILIES):
                raise ValueError(f"ConjugateGaussian context {name!r}: the {d.get('of', 'likelihood')} families it "
                                 f"knows are 'normal' and 'student_t', got {d['choices']}")
        if sum("choices" in d and d.get("of", "likelihood") == "likelihood" for d in space.spec.values()) > 1 or \
                sum("choices" in d and d.get("of") == "prior" for d in space.spec.values()) > 1:
            raise ValueError("ConjugateGaussian takes at most one choice of the likelihood family and one of the prior's")
        for part, letter in (("likelihood", "beta"), ("prior", "alpha")):
            low = space.spec.get(space.power(part) or "", {}).get("range", [1.0])[0]
            if low * (self.student_df + 1) <= 1:
                raise ValueError(f"ConjugateGaussian: a Student-t {part} to the power {low} has no proper density "
                                 f"(needs {letter} > 1 / (student_df + 1) = {1 / (self.student_df + 1):.3g})")
        object.__setattr__(self, "contexts", space.spec or None)

    def _context(self, context, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each data set's prior power, likelihood power, Student-t likelihood and Student-t prior flags, ``(n,)`` each."""
        space, c = ContextSpace(self.contexts), context or {}
        ones = torch.ones(n)

        def value(name):
            return ones if name is None or name not in c else torch.as_tensor(c[name], dtype=torch.float32)

        def student(part):
            name = space.choice_of(part)
            if name is None or name not in c:
                return torch.full((n,), getattr(self, part) == "student_t")
            options = space.spec[name]["choices"]
            return torch.as_tensor(c[name]).long() == (options.index("student_t") if "student_t" in options else -1)

        return value(space.power("prior")), value(space.power("likelihood")), student("likelihood"), student("prior")

    @property
    def parameter_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(f"mu[{i + 1}]" for i in range(self.dim))

    @property
    def data_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(f"y{i + 1}" for i in range(self.dim))

    def sample_prior(self, n: int, generator: torch.Generator | None = None, context=None) -> torch.Tensor:
        alpha, _, _, student = self._context(context, n)
        noise = self._powered_noise(torch.randn(n, 1, self.dim, generator=generator), alpha, self.prior_sd, student,
                                    generator)
        return self.prior_mean + noise[:, 0]

    def simulate_data(self, theta, n_obs, generator=None, context=None) -> torch.Tensor:
        b = theta.shape[0]
        _, beta, student, _ = self._context(context, b)
        noise = self._powered_noise(torch.randn(b, n_obs, self.dim, generator=generator), beta, self.noise_sd, student,
                                    generator)
        return theta[:, None, :] + noise

    def _powered_noise(self, noise: torch.Tensor, power: torch.Tensor, scale: float, student: torch.Tensor,
                       generator) -> torch.Tensor:
        """Draws ``(B, N, D)`` of a zero-centred normal or Student-t density of ``scale`` to the power ``(B,)``.

        From standard normal ``noise``: a normal to a power ``p`` has scale ``scale / sqrt(p)``; a
        Student-t is ``normal / sqrt(chi2_nu' / nu')`` with the docstring's ``nu'`` and scale.
        """
        normal_scale = scale / power.sqrt()
        out = normal_scale[:, None, None] * noise
        if bool(student.any()):
            nu = (power * (self.student_df + 1) - 1).double().numpy()
            chi2 = numpy_rng(generator).chisquare(np.broadcast_to(nu[:, None, None], noise.shape))
            t = noise / torch.from_numpy(np.sqrt(chi2 / nu[:, None, None])).float()
            t_scale = scale * torch.sqrt(self.student_df / torch.from_numpy(nu).float())
            out = torch.where(student[:, None, None], t * t_scale[:, None, None], out)
        return out

    def posterior(self, x: np.ndarray, mask: np.ndarray | None = None, *, alpha: float = 1.0,
                  beta: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Closed-form posterior means ``(B, D)`` and standard deviations ``(B, D)`` (normal likelihood).

        ``alpha``, ``beta``: the prior and likelihood raised to these powers.
        """
        self._normal_only()
        x = np.asarray(x, dtype=float)
        if x.ndim == 2:
            x = x[None]
        m = np.ones(x.shape[:2]) if mask is None else np.asarray(mask, dtype=float).reshape(x.shape[:2])
        n = m.sum(1, keepdims=True)
        prior_prec, noise_prec = alpha / self.prior_sd**2, beta / self.noise_sd**2
        prec = prior_prec + n * noise_prec
        mean = (self.prior_mean * prior_prec + (x * m[..., None]).sum(1) * noise_prec) / prec
        return mean, np.broadcast_to(np.sqrt(1.0 / prec), mean.shape).copy()

    def log_evidence(self, x: np.ndarray) -> float:
        """Exact ``log p(x)`` of one data set ``(N, D)`` (components are independent)."""
        self._normal_only()
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
        if self.prior == "student_t":
            from scipy import stats

            return torch.from_numpy(stats.t.logpdf(z.numpy(), self.student_df) - math.log(self.prior_sd)).sum(-1)
        return (-0.5 * z * z - math.log(self.prior_sd) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def _normal_only(self) -> None:
        if self.likelihood != "normal" or self.prior != "normal":
            raise ValueError("the closed forms of ConjugateGaussian need likelihood='normal' and prior='normal' "
                             "(posterior_quadrature takes any combination)")

    def posterior_quadrature(self, x: np.ndarray, *, alpha: float = 1.0, beta: float = 1.0, prior: str | None = None,
                             likelihood: str | None = None, points: int = 4001) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and SD ``(D,)`` of one data set ``x (N, D)`` by quadrature, for any families and powers.

        The density ``p(mu)^alpha prod_i p(x_i | mu)^beta`` (``prior``, ``likelihood``: the families,
        default the model's) on a grid of ``points`` over the prior's and the data's range, per
        component (the components are independent).  Student-t likelihood powers are location
        families of fixed scale, so the simulated normalized power has this posterior exactly.
        """
        from scipy import stats

        prior, likelihood = prior or self.prior, likelihood or self.likelihood
        x = np.asarray(x, dtype=float).reshape(-1, self.dim)
        means, sds = np.empty(self.dim), np.empty(self.dim)

        def logpdf(z, family):
            return stats.t.logpdf(z, self.student_df) if family == "student_t" else stats.norm.logpdf(z)

        for d in range(self.dim):
            lo = min(self.prior_mean - 12 * self.prior_sd, x[:, d].min() - 12 * self.noise_sd)
            hi = max(self.prior_mean + 12 * self.prior_sd, x[:, d].max() + 12 * self.noise_sd)
            grid = np.linspace(lo, hi, int(points))
            log_post = alpha * logpdf((grid - self.prior_mean) / self.prior_sd, prior)
            log_post = log_post + beta * logpdf((x[:, d][None] - grid[:, None]) / self.noise_sd, likelihood).sum(1)
            w = np.exp(log_post - log_post.max())
            w /= w.sum()
            means[d] = (w * grid).sum()
            sds[d] = np.sqrt((w * (grid - means[d]) ** 2).sum())
        return means, sds

    def log_likelihood_rows(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Exact ``log p(x_i | mu)`` of each row of one data set ``x (N, D)`` at each ``theta (M, D)``: ``(M, N)``."""
        x, t = np.asarray(x, dtype=float), np.asarray(theta, dtype=float)
        z = (x[None] - t[:, None]) / self.noise_sd
        if self.likelihood == "student_t":
            from scipy import stats

            return (stats.t.logpdf(z, self.student_df) - math.log(self.noise_sd)).sum(-1)
        return (-0.5 * z * z - math.log(self.noise_sd) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def loo_log_predictive(self, x: np.ndarray) -> np.ndarray:
        """Exact leave-one-out ``log p(x_i | x_-i)`` of each row of one data set ``x (N, D)``, ``(N,)``."""
        self._normal_only()
        x = np.asarray(x, dtype=float)
        n = x.shape[0]
        rest = (x.sum(0)[None] - x)  # (N, D): sums of the other rows
        prec = 1.0 / self.prior_sd**2 + (n - 1) / self.noise_sd**2
        mean = (self.prior_mean / self.prior_sd**2 + rest / self.noise_sd**2) / prec
        var = 1.0 / prec + self.noise_sd**2
        return (-0.5 * (x - mean) ** 2 / var - 0.5 * np.log(2 * np.pi * var)).sum(-1)
