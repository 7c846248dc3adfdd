"""Conjugate Gaussian model: unknown mean of a D-dimensional Gaussian with known noise; closed-form posterior.

    mu ~ N(m0 * 1, s0^2 I),    x_i | mu ~ N(mu, sigma^2 I),  i = 1..N

The posterior is ``N(m_N, s_N^2 I)`` with ``1/s_N^2 = 1/s0^2 + N/sigma^2`` and
``m_N = s_N^2 (m0/s0^2 + sum_i x_i / sigma^2)``; the evidence is Gaussian as well.

**Contexts** (:mod:`amortbayes.sensitivity`): ``contexts={"alpha": power_scale("prior"),
"beta": power_scale("likelihood"), "likelihood": choice("normal", "student_t")}`` (any
subset, any names) trains one amortizer over the whole family.  The normal prior to the power
``alpha`` is ``N(m0, s0^2 / alpha)``; each normal row's likelihood to the power ``beta`` is
``N(mu, sigma^2 / beta)`` and a Student-t row's (``student_df = nu``) is Student-t with
``nu' = beta (nu + 1) - 1`` degrees of freedom and scale ``sigma sqrt(nu / nu')`` (so beta must
exceed ``1 / (nu + 1)``), all simulated exactly.  With a normal likelihood the posterior stays in
closed form (:meth:`ConjugateGaussian.posterior` takes the context).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from amortbayes.sensitivity import ContextSpace
from amortbayes.simulation import FlatModel, numpy_rng


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

    name = "conjugate_gaussian"

    def __post_init__(self) -> None:
        if self.dim < 1 or self.prior_sd <= 0 or self.noise_sd <= 0 or self.student_df <= 0:
            raise ValueError("ConjugateGaussian needs dim >= 1, positive standard deviations and student_df > 0")
        object.__setattr__(self, "n_obs", tuple(self.n_obs))
        if self.likelihood not in ("normal", "student_t"):
            raise ValueError(f"ConjugateGaussian likelihood must be 'normal' or 'student_t', got {self.likelihood!r}")
        space = ContextSpace(self.contexts)
        for name, d in space.spec.items():
            if "choices" in d and not set(d["choices"]) <= {"normal", "student_t"}:
                raise ValueError(f"ConjugateGaussian context {name!r}: the likelihood families it knows are "
                                 f"'normal' and 'student_t', got {d['choices']}")
        low_beta = space.spec.get(space.power("likelihood") or "", {}).get("range", [1.0])[0]
        if low_beta * (self.student_df + 1) <= 1:
            raise ValueError(f"ConjugateGaussian: a Student-t likelihood to the power {low_beta} has no proper "
                             f"density (needs beta > 1 / (student_df + 1) = {1 / (self.student_df + 1):.3g})")
        object.__setattr__(self, "contexts", space.spec or None)

    def _context(self, context, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each data set's prior power, likelihood power and Student-t flag, ``(n,)`` each."""
        space, c = ContextSpace(self.contexts), context or {}
        ones = torch.ones(n)

        def value(name):
            return ones if name is None or name not in c else torch.as_tensor(c[name], dtype=torch.float32)

        family = next((k for k, d in space.spec.items() if "choices" in d), None)
        student = torch.full((n,), self.likelihood == "student_t")
        if family is not None and family in c:
            options = space.spec[family]["choices"]
            student = torch.as_tensor(c[family]).long() == (options.index("student_t") if "student_t" in options
                                                            else -1)
        return value(space.power("prior")), value(space.power("likelihood")), student

    @property
    def parameter_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(f"mu[{i + 1}]" for i in range(self.dim))

    @property
    def data_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(f"y{i + 1}" for i in range(self.dim))

    def sample_prior(self, n: int, generator: torch.Generator | None = None, context=None) -> torch.Tensor:
        alpha = self._context(context, n)[0]
        return self.prior_mean + (self.prior_sd / alpha.sqrt())[:, None] * torch.randn(n, self.dim, generator=generator)

    def simulate_data(self, theta, n_obs, generator=None, context=None) -> torch.Tensor:
        b = theta.shape[0]
        _, beta, student = self._context(context, b)
        noise = torch.randn(b, n_obs, self.dim, generator=generator)
        scale = self.noise_sd / beta.sqrt()
        if bool(student.any()):  # Student-t rows: normal / sqrt(chi2_nu' / nu'), powered as the docstring says
            nu = (beta * (self.student_df + 1) - 1).double().numpy()
            chi2 = numpy_rng(generator).chisquare(np.broadcast_to(nu[:, None, None], noise.shape))
            t = noise / torch.from_numpy(np.sqrt(chi2 / nu[:, None, None])).float()
            t_scale = self.noise_sd * torch.sqrt(self.student_df / torch.from_numpy(nu).float())
            noise = torch.where(student[:, None, None], t * (t_scale / scale)[:, None, None], noise)
        return theta[:, None, :] + scale[:, None, None] * noise

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
        return (-0.5 * z * z - math.log(self.prior_sd) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def _normal_only(self) -> None:
        if self.likelihood != "normal":
            raise ValueError("the closed forms of ConjugateGaussian need likelihood='normal'")

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
