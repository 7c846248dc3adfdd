"""brms-style priors: ``prior("normal(0, 5)", class_="b", coef="Days")``, data-scaled proper defaults, the table.

A :class:`Prior` is one distribution on one class of parameters (brms' ``class``, ``coef``,
``group``).  Amortization needs a proper prior to simulate from, so a flat prior is refused,
and the defaults are brms' own where brms' are proper:

* ``Intercept`` (the intercept of centred predictors, as brms parameterizes it):
  ``student_t(3, median(y), max(2.5, mad(y)))`` on the identity link; on log and logit links
  ``student_t(3, 0, 2.5)`` (link-scale location from the data where brms takes it);
* ``sd`` and ``sigma``: ``student_t(3, 0, max(2.5, mad(y)))``, half (lower bound 0); on
  non-identity links ``student_t(3, 0, 2.5)``;
* ``cor``: ``lkj(1)``;  ``nu``: ``gamma(2, 0.1)`` (brms', truncated at 1);
* ``shape`` (negbinomial): ``gamma(2, 0.1)``, *not* brms' ``gamma(0.01, 0.01)``: that prior
  is proper but puts half its mass below 1e-30, where a negative binomial's draws are all
  zeros or overflow, so an amortizer trained on it learns nothing about the shape that
  data hold (2.5 % of draws below 2.4, 97.5 % below 56: overdispersion from strong to nearly Poisson);
* ``b``, where brms is flat: an rstanarm-style autoscaled ``normal(0, 2.5 * s_y / s_x)``
  (``s_y`` the response's SD on the identity link, 1 otherwise; ``s_x`` the column's SD).

``mad`` is R's ``mad()`` (the median absolute deviation times 1.4826), and brms rounds the
location and scale to one decimal, which is kept here so the same numbers appear in both.

References:
    Bürkner (2017), brms, JSS 80(1), and ``brms::default_prior``'s documentation.
    Goodrich et al. (2020), rstanarm's prior distributions vignette (autoscaling).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

# distribution name -> number of arguments (brms/Stan spellings)
DISTRIBUTIONS = {"normal": 2, "student_t": 3, "cauchy": 2, "exponential": 1, "gamma": 2, "lkj": 1,
                 "lkj_corr_cholesky": 1}
CLASSES = ("Intercept", "b", "sd", "cor", "sigma", "nu", "shape")
_CALL = re.compile(r"^\s*([a-z_]+)\s*\((.*)\)\s*$")


@dataclasses.dataclass(frozen=True)
class Prior:
    """One prior statement, as brms' ``set_prior(prior, class, coef, group)``.

    Attributes:
        dist: distribution name (``normal``, ``student_t``, ``cauchy``, ``exponential``, ``gamma``, ``lkj``).
        args: its arguments, in Stan's order.
        class_: ``Intercept``, ``b``, ``sd``, ``cor``, ``sigma``, ``nu`` or ``shape``.
        coef: a single coefficient (``""``: the whole class).
        group: a grouping factor (``""``: every one), for ``sd`` and ``cor``.
        source: ``"user"`` or ``"default"``.
    """

    dist: str
    args: tuple[float, ...]
    class_: str
    coef: str = ""
    group: str = ""
    source: str = "user"

    def __post_init__(self) -> None:
        if self.class_ not in CLASSES:
            raise ValueError(f"unknown prior class {self.class_!r}; use one of {list(CLASSES)}")
        if self.dist not in DISTRIBUTIONS:
            raise ValueError(f"unknown prior distribution {self.dist!r}; amortization supports the proper "
                             f"distributions {list(DISTRIBUTIONS)}")
        if len(self.args) != DISTRIBUTIONS[self.dist]:
            raise ValueError(f"{self.dist} takes {DISTRIBUTIONS[self.dist]} argument(s), got {len(self.args)} "
                             f"in {self.stan()!r}")
        scale_at = {"normal": 1, "student_t": 2, "cauchy": 1, "exponential": 0, "gamma": 0, "lkj": 0,
                    "lkj_corr_cholesky": 0}[self.dist]
        if not all(np.isfinite(self.args)) or self.args[scale_at] <= 0 or (self.dist in ("gamma", "student_t")
                                                                             and self.args[0] <= 0) or (
                self.dist == "gamma" and self.args[1] <= 0):
            raise ValueError(f"prior {self.stan()!r} is improper or has a non-positive scale, shape or rate")
        if (self.class_ == "cor") != self.dist.startswith("lkj"):
            raise ValueError(f"class 'cor' takes an lkj prior and only it does; got {self.stan()!r} for "
                             f"class {self.class_!r}")

    def stan(self) -> str:
        """The Stan spelling, e.g. ``student_t(3, 0, 2.5)``."""
        return f"{self.dist}({', '.join(f'{a:g}' for a in self.args)})"

    @property
    def lower(self) -> float | None:
        """brms' lower bound of the class: 0 for ``sd``, ``sigma`` and ``shape``, 1 for ``nu``, else None."""
        return {"sd": 0.0, "sigma": 0.0, "shape": 0.0, "nu": 1.0}.get(self.class_)

    def _scipy(self, power: np.ndarray | None = None):
        """The distribution, or with ``power`` (an array) the normalized density to that power, per element.

        Every family here is closed under powers: normal ``sd / sqrt(alpha)``; Student-t
        ``nu' = alpha (nu + 1) - 1`` and ``scale sqrt(nu / nu')`` (Cauchy: ``nu = 1``);
        exponential ``rate alpha``; gamma ``shape alpha (a - 1) + 1``, ``rate alpha b``.
        """
        a = self.args
        al = 1.0 if power is None else np.asarray(power, dtype=float)
        if self.dist == "normal":
            return stats.norm(a[0], a[1] / np.sqrt(al))
        if self.dist in ("student_t", "cauchy"):
            nu, loc, scale = (a[0], a[1], a[2]) if self.dist == "student_t" else (1.0, a[0], a[1])
            nu_p = al * (nu + 1) - 1
            return stats.t(nu_p, loc, scale * np.sqrt(nu / nu_p))
        if self.dist == "exponential":
            return stats.expon(scale=1 / (a[0] * al))
        if self.dist == "gamma":
            return stats.gamma(al * (a[0] - 1) + 1, scale=1 / (a[1] * al))
        raise ValueError(f"{self.stan()} is a prior on a correlation matrix, not on a scalar parameter")

    def lowest_power(self) -> float:
        """The infimum of the powers this prior has a proper density at (0 for most)."""
        a = self.args
        if self.dist in ("student_t", "cauchy"):
            return 1.0 / ((a[0] if self.dist == "student_t" else 1.0) + 1.0)
        if self.dist == "gamma" and a[0] < 1:
            return 1.0 / (1.0 - a[0])
        if self.dist.startswith("lkj") and a and a[0] < 1:
            return 1.0 / (1.0 - a[0])
        return 0.0

    def sample(self, n: int, generator: torch.Generator | None = None, power: Any = None) -> torch.Tensor:
        """``n`` draws (float64), truncated below at :attr:`lower` as brms truncates the class.

        By the inverse CDF of uniforms on ``[F(lower), 1)``, so a bound far in a tail costs nothing.
        ``power (n,)``: each draw from the prior raised to its power (normalized), see :meth:`_scipy`.
        """
        from amortbayes.simulation import numpy_rng

        d = self._scipy(None if power is None else np.asarray(power, dtype=float))
        lo = d.cdf(self.lower) if self.lower is not None else 0.0
        u = numpy_rng(generator).uniform(lo, 1.0, n)
        return torch.from_numpy(np.asarray(d.ppf(np.clip(u, 1e-300, 1 - 1e-16)), dtype=np.float64))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized log density of the (truncated) prior at ``x``; ``-inf`` below the bound."""
        a = [torch.tensor(v, dtype=x.dtype) for v in self.args]
        dist = torch.distributions
        base = {"normal": lambda: dist.Normal(a[0], a[1]), "student_t": lambda: dist.StudentT(a[0], a[1], a[2]),
                "cauchy": lambda: dist.Cauchy(a[0], a[1]), "exponential": lambda: dist.Exponential(a[0]),
                "gamma": lambda: dist.Gamma(a[0], a[1])}
        if self.dist not in base:
            raise ValueError(f"{self.stan()} is a prior on a correlation matrix, not on a scalar parameter")
        d = base[self.dist]()
        inside = torch.ones_like(x, dtype=torch.bool) if self.lower is None else x > self.lower
        safe = torch.where(inside, x, torch.full_like(x, (self.lower or 0.0) + 1.0))
        lp = d.log_prob(safe)
        if self.lower is not None:
            lp = lp - float(self._scipy().logsf(self.lower))
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))


def prior(spec: str, class_: str = "b", coef: str = "", group: str = "") -> Prior:
    """A prior statement as brms writes it: ``prior("normal(0, 5)", class_="b", coef="Days")``.

    Raises:
        ValueError: a flat or improper prior (``""``, ``flat``, ``uniform`` without bounds), an
            unknown distribution or class, or arguments that are not numbers.

    Example:
        >>> prior("normal(0, 5)", class_="b", coef="Days")
        Prior(dist='normal', args=(0.0, 5.0), class_='b', coef='Days', group='', source='user')
    """
    if not isinstance(spec, str) or spec.strip() in ("", "flat") or spec.strip().startswith("uniform"):
        raise ValueError(f"prior {spec!r} is flat or improper: amortized inference simulates parameters from "
                         "the prior, so every parameter needs a proper one, such as 'normal(0, 5)'")
    m = _CALL.match(spec)
    if m is None:
        raise ValueError(f"prior {spec!r} must read like 'normal(0, 5)' or 'student_t(3, 0, 2.5)'")
    try:
        args = tuple(float(a) for a in m.group(2).split(",") if a.strip())
    except ValueError:
        raise ValueError(f"prior {spec!r}: arguments must be numbers") from None
    return Prior(m.group(1), args, class_, coef, group)


def r_mad(y: np.ndarray) -> float:
    """R's ``mad()``: the median absolute deviation from the median, times 1.4826."""
    y = np.asarray(y, dtype=float)
    return float(1.4826 * np.median(np.abs(y - np.median(y))))


def _round1(v: float) -> float:
    return float(np.round(v, 1))


def default_priors(terms, link: str = "identity", log_response: bool = False,
                   dpars: tuple[str, ...] = ()) -> list[Prior]:
    """The proper data-scaled defaults for a :class:`~amortbayes.formula.terms.FormulaTerms` (see the module docstring).

    ``log_response``: the family models ``log(y)`` (lognormal), so the scales are read off ``log(y)``, as brms does.
    ``dpars``: the family's distributional parameters besides ``sigma`` that get a default (``nu``, ``shape``).
    """
    y = np.asarray(terms.y, dtype=float)
    if log_response:
        y = np.log(y)
    if link == "identity":
        loc, scale = _round1(np.median(y)), _round1(max(2.5, r_mad(y)))
        s_y = float(np.std(y, ddof=1)) if len(y) > 1 else 1.0
    else:
        loc, scale, s_y = 0.0, 2.5, 1.0
    out: list[Prior] = []
    names = list(terms.fixed_names)
    if "Intercept" in names:
        out.append(Prior("student_t", (3.0, loc, scale), "Intercept", source="default"))
    for j, name in enumerate(names):
        if name == "Intercept":
            continue
        s_x = float(np.std(terms.X[:, j], ddof=1))
        if not s_x > 0:
            raise ValueError(f"predictor {name!r} is constant in the data: its coefficient is not identified")
        out.append(Prior("normal", (0.0, float(f"{2.5 * s_y / s_x:.3g}")), "b", coef=name, source="default"))
    if terms.group is not None:
        out.append(Prior("student_t", (3.0, 0.0, scale), "sd", source="default"))
        if terms.correlated:
            out.append(Prior("lkj", (1.0,), "cor", source="default"))
    if link == "identity":
        out.append(Prior("student_t", (3.0, 0.0, scale), "sigma", source="default"))
    out += [Prior("gamma", (2.0, 0.1), d, source="default") for d in dpars if d in ("nu", "shape")]
    return out


def prior_table(priors: list[Prior]) -> pd.DataFrame:
    """brms' ``default_prior`` layout: prior, class, coef, group, lb, source."""
    bounded = {"sd", "sigma", "nu", "shape"}
    return pd.DataFrame([{"prior": p.stan(), "class": p.class_, "coef": p.coef, "group": p.group,
                          "lb": "0" if p.class_ in bounded else "", "source": p.source} for p in priors])


def combine_priors(user: list[Prior] | None, defaults: list[Prior], terms) -> list[Prior]:
    """Defaults with the user's statements in their place, as brms combines them.

    A class-wide statement (``coef=""``) replaces the defaults of every coefficient of that
    class; a statement for one coefficient replaces that one's.  ``sd`` and ``cor``
    statements may name the grouping factor.

    Raises:
        ValueError: a coefficient or grouping factor the model does not have, or a class the
            model has no parameter of (``sd`` without group terms, ``sigma`` for a family without it).
    """
    out = list(defaults)
    present = {p.class_ for p in defaults} | ({"b"} if len(terms.fixed_names) > ("Intercept" in terms.fixed_names)
                                                else set())
    for p in user or []:
        if not isinstance(p, Prior):
            raise TypeError(f"priors are amortbayes.formula.prior(...) statements, got {type(p).__name__}")
        if p.class_ not in present:
            raise ValueError(f"prior on class {p.class_!r}, but the model has no such parameter "
                             f"(its classes: {sorted(present)})")
        coefs = {"b": [n for n in terms.fixed_names if n != "Intercept"], "sd": list(terms.group_names)}.get(p.class_, [])
        if p.coef and p.coef not in coefs:
            raise ValueError(f"prior on coefficient {p.coef!r} of class {p.class_!r}, which the model does not have; "
                             f"its coefficients: {coefs}")
        if p.group and p.group != terms.group:
            raise ValueError(f"prior on group {p.group!r}, but the model's grouping factor is {terms.group!r}")
        out = [d for d in out if not (d.class_ == p.class_ and (not p.coef or d.coef == p.coef))]
        out.append(p)
    return out
