"""Response families: each one small object with what every stage needs (simulate, log likelihood, Stan, checks).

A family maps the linear predictor ``eta`` (on the link scale) and its distributional
parameters (``sigma``, ``nu``, ``shape``: brms' names) to a response distribution.  Adding a
family is adding one :class:`Family`; the simulator, the importance weights and LOO (through
``log_lik``), the Stan program (``stan``) and the prior defaults (``link``, ``dpars``) read
it from here.

=============  ========  =================  ===============================================
family         link      dpars              Stan likelihood
=============  ========  =================  ===============================================
gaussian       identity  sigma              ``normal(mu, sigma)``
student        identity  sigma, nu (> 1)    ``student_t(nu, mu, sigma)``
lognormal      identity  sigma              ``lognormal(mu, sigma)`` (mu on the log scale)
bernoulli      logit     --                 ``bernoulli_logit(mu)``
binomial       logit     --                 ``binomial_logit(trials, mu)``
poisson        log       --                 ``poisson_log(mu)``
negbinomial    log       shape              ``neg_binomial_2_log(mu, shape)``
=============  ========  =================  ===============================================

Simulation takes a ``torch.Generator`` (the simulation contract) and is vectorized: ``eta``
of any shape, the dpars broadcast against it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
import torch

Tensor = torch.Tensor


def _gamma(shape: Tensor, g: torch.Generator | None) -> Tensor:
    return torch._standard_gamma(shape, generator=g)


def _normal(eta, d, g, trials):
    return eta + d["sigma"] * torch.randn(eta.shape, generator=g, dtype=eta.dtype)


def _student(eta, d, g, trials):
    nu = d["nu"].expand_as(eta)
    chi2 = 2.0 * _gamma(nu / 2.0, g)
    return eta + d["sigma"] * torch.randn(eta.shape, generator=g, dtype=eta.dtype) * torch.sqrt(nu / chi2)


def _lognormal(eta, d, g, trials):
    return torch.exp(_normal(eta, d, g, trials))


def _bernoulli(eta, d, g, trials):
    return (torch.rand(eta.shape, generator=g, dtype=eta.dtype) < torch.sigmoid(eta)).to(eta.dtype)


def _binomial(eta, d, g, trials):
    return torch.binomial(trials.expand_as(eta).to(eta.dtype), torch.sigmoid(eta), generator=g)


def _poisson(eta, d, g, trials):
    return torch.poisson(torch.exp(eta.clamp_max(20.0)), generator=g)


def _negbinomial(eta, d, g, trials):
    shape = d["shape"].expand_as(eta)
    rate = _gamma(shape, g) * torch.exp(eta.clamp_max(20.0)) / shape
    return torch.poisson(rate, generator=g)


_LOG_2PI = math.log(2 * math.pi)


def _ll_normal(y, eta, d, trials):
    z = (y - eta) / d["sigma"]
    return -0.5 * z * z - torch.log(d["sigma"]) - 0.5 * _LOG_2PI


def _ll_student(y, eta, d, trials):
    nu, s = d["nu"], d["sigma"]
    z = (y - eta) / s
    return (torch.lgamma((nu + 1) / 2) - torch.lgamma(nu / 2) - 0.5 * torch.log(nu * math.pi) - torch.log(s)
            - (nu + 1) / 2 * torch.log1p(z * z / nu))


def _ll_lognormal(y, eta, d, trials):
    ly = torch.log(y)
    return _ll_normal(ly, eta, d, trials) - ly


def _ll_bernoulli(y, eta, d, trials):
    return y * eta - torch.nn.functional.softplus(eta)


def _ll_binomial(y, eta, d, trials):
    n = trials
    return (torch.lgamma(n + 1) - torch.lgamma(y + 1) - torch.lgamma(n - y + 1)
            + y * eta - n * torch.nn.functional.softplus(eta))


def _ll_poisson(y, eta, d, trials):
    return y * eta - torch.exp(eta) - torch.lgamma(y + 1)


def _ll_negbinomial(y, eta, d, trials):
    phi = d["shape"]
    # log NB2(y | mu = exp(eta), phi) written with log mu = eta for stability
    log_mu_phi = torch.logaddexp(eta, torch.log(phi))
    return (torch.lgamma(y + phi) - torch.lgamma(phi) - torch.lgamma(y + 1)
            + phi * (torch.log(phi) - log_mu_phi) + y * (eta - log_mu_phi))


# d log p(y | eta) / d eta and the Fisher information E[-d^2 log p / d eta^2] per row: the Fisher-scoring
# steps of a group's Laplace approximation (amortbayes.formula.laplace).  Lognormal rows hold log y.
def _fs_normal(y, eta, d, trials):
    v = d["sigma"] ** 2
    return (y - eta) / v, (1.0 / v).expand_as(eta)


def _fs_student(y, eta, d, trials):
    nu, v = d["nu"], d["sigma"] ** 2
    r = y - eta
    return (nu + 1) * r / (nu * v + r * r), ((nu + 1) / ((nu + 3) * v)).expand_as(eta)


def _fs_bernoulli(y, eta, d, trials):
    p = torch.sigmoid(eta)
    return y - p, p * (1 - p)


def _fs_binomial(y, eta, d, trials):
    p = torch.sigmoid(eta)
    return y - trials * p, trials * p * (1 - p)


def _fs_poisson(y, eta, d, trials):
    mu = torch.exp(eta)
    return y - mu, mu


def _fs_negbinomial(y, eta, d, trials):
    mu, phi = torch.exp(eta), d["shape"]
    return (y - mu) * phi / (mu + phi), mu * phi / (mu + phi)


def _check_real(name):
    def check(y: np.ndarray, trials: np.ndarray | None) -> None:
        if not np.issubdtype(np.asarray(y).dtype, np.number):
            raise ValueError(f"family {name!r} needs a numeric response, got values such as {np.asarray(y)[:3]!r}")
    return check


def _check_positive(y, trials):
    _check_real("lognormal")(y, trials)
    if np.any(np.asarray(y) <= 0):
        raise ValueError(f"family 'lognormal' needs a positive response; {int(np.sum(np.asarray(y) <= 0))} value(s) "
                         "are zero or negative")


def _check_binary(y, trials):
    _check_real("bernoulli")(y, trials)
    bad = ~np.isin(np.asarray(y, dtype=float), (0.0, 1.0))
    if bad.any():
        raise ValueError(f"family 'bernoulli' needs a response of 0s and 1s; {int(bad.sum())} value(s) are "
                         f"neither, such as {np.asarray(y)[bad][:3].tolist()}")


def _counts(name):
    def check(y, trials):
        _check_real(name)(y, trials)
        y = np.asarray(y, dtype=float)
        bad = (y < 0) | (y != np.round(y))
        if bad.any():
            raise ValueError(f"family {name!r} needs non-negative integer counts; {int(bad.sum())} value(s) are "
                             f"not, such as {y[bad][:3].tolist()}")
    return check


def _check_binomial(y, trials):
    _counts("binomial")(y, trials)
    if trials is None:
        raise ValueError("family 'binomial' needs the number of trials: write 'successes | trials(n) ~ ...' "
                         "or 'cbind(successes, failures) ~ ...'")
    _counts("binomial")(trials, None)
    above = np.asarray(y) > np.asarray(trials)
    if above.any():
        raise ValueError(f"family 'binomial': successes above trials in {int(above.sum())} row(s)")


@dataclasses.dataclass(frozen=True)
class Family:
    """A response family (see the module docstring's table).

    Attributes:
        name: brms' name.
        link: ``identity``, ``logit`` or ``log``.
        dpars: distributional parameters besides the mean, brms' names.
        dpar_support: their parameter supports: ``"positive"``; ``nu`` is brms' ``nu >= 1``,
            written ``"interval:1:1000"`` (its default prior ``gamma(2, 0.1)`` puts less than
            1e-40 above 1,000).
        stan_lpdf: the Stan sampling statement's right-hand side for response ``Y`` and predictor ``mu``.
    """

    name: str
    link: str
    dpars: tuple[str, ...]
    dpar_support: tuple[str, ...]
    stan_lpdf: str
    _simulate: Callable = dataclasses.field(repr=False, compare=False)
    _log_lik: Callable = dataclasses.field(repr=False, compare=False)
    check_response: Callable = dataclasses.field(repr=False, compare=False)
    _score_fisher: Callable = dataclasses.field(repr=False, compare=False)
    integer_response: bool = False

    def simulate(self, eta: Tensor, dpars: dict[str, Tensor] | None = None, generator: torch.Generator | None = None,
                 trials: Tensor | None = None) -> Tensor:
        """Responses for linear predictors ``eta`` (link scale), dpars broadcast against it."""
        return self._simulate(eta, self._dpars(dpars, eta), generator, trials)

    def log_lik(self, y: Tensor, eta: Tensor, dpars: dict[str, Tensor] | None = None,
                trials: Tensor | None = None) -> Tensor:
        """Pointwise log likelihood of ``y`` (same shape as ``eta`` after broadcasting)."""
        return self._log_lik(y, eta, self._dpars(dpars, eta), trials)

    def score_fisher(self, y: Tensor, eta: Tensor, dpars: dict[str, Tensor] | None = None,
                     trials: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Per row ``d log p(y | eta) / d eta`` and the Fisher information ``E[-d^2 log p / d eta^2]`` (lognormal: of log y).

        Example:
            >>> s, w = get_family("poisson").score_fisher(torch.tensor([3.0]), torch.tensor([0.0]))
            >>> s.item(), w.item()
            (2.0, 1.0)
        """
        return self._score_fisher(y, eta, self._dpars(dpars, eta), trials)

    def _dpars(self, dpars: dict[str, Tensor] | None, eta: Tensor) -> dict[str, Tensor]:
        dpars = dict(dpars or {})
        missing = [p for p in self.dpars if p not in dpars]
        if missing:
            raise ValueError(f"family {self.name!r} needs {missing}")
        return {k: torch.as_tensor(v, dtype=eta.dtype) for k, v in dpars.items()}


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("gaussian", "identity", ("sigma",), ("positive",), "normal(mu, sigma)", _normal, _ll_normal,
           _check_real("gaussian"), _fs_normal),
    Family("student", "identity", ("sigma", "nu"), ("positive", "interval:1:1000"), "student_t(nu, mu, sigma)",
           _student, _ll_student, _check_real("student"), _fs_student),
    Family("lognormal", "identity", ("sigma",), ("positive",), "lognormal(mu, sigma)", _lognormal, _ll_lognormal,
           _check_positive, _fs_normal),
    Family("bernoulli", "logit", (), (), "bernoulli_logit(mu)", _bernoulli, _ll_bernoulli, _check_binary, _fs_bernoulli, True),
    Family("binomial", "logit", (), (), "binomial_logit(trials, mu)", _binomial, _ll_binomial, _check_binomial,
           _fs_binomial, True),
    Family("poisson", "log", (), (), "poisson_log(mu)", _poisson, _ll_poisson, _counts("poisson"), _fs_poisson, True),
    Family("negbinomial", "log", ("shape",), ("positive",), "neg_binomial_2_log(mu, shape)", _negbinomial,
           _ll_negbinomial, _counts("negbinomial"), _fs_negbinomial, True),
)}


def get_family(family: str | Family) -> Family:
    """A family by brms' name (``"gaussian"``, ``"student"``, ...), or the object itself.

    Example:
        >>> get_family("poisson").link
        'log'
    """
    if isinstance(family, Family):
        return family
    if not isinstance(family, str) or family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; supported: {list(FAMILIES)}")
    return FAMILIES[family]
