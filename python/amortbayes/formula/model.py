"""Formula -> a two-level simulator of that design: a :class:`~amortbayes.simulation.MultilevelModel` like any other.

For a formula ``y ~ X b + (Z | g)`` with family ``f`` (brms' parameterization):

    Intercept ~ prior (the intercept of centred predictors),  b_k ~ prior,
    b_Intercept = Intercept - sum_k b_k mean(X_k)
    sd_g__k ~ prior (half, lower bound 0),  Omega ~ LKJ(eta) per correlated block
    r_j ~ MVN(0, diag(sd) Omega diag(sd)),  j = 1..J
    y_ji ~ f(X_ji b + Z_ji r_j, sigma / nu / shape)

Global parameters are named as ``brms::as_draws_df`` names them (``b_Intercept``, ``b_Days``,
``sd_Subject__Intercept``, ``cor_Subject__Intercept__Days``, ``sigma``); local ones are
``r_Subject[.,Intercept]`` per group.  A data set's rows are ``[X, Z, y]`` (``[X, Z, trials, y]``
for binomial, ``[X, Z, log1p(y), y]`` for poisson and negbinomial, ``[X, Z, log(y)]`` for
lognormal), so covariates travel with the data.  Designs are drawn like the user's: each
simulated group takes the rows of one of the user's groups in random order (without
replacement up to that group's size, cyclically beyond it; the group size is the one the
simulation contract draws), so the amortizer is trained on data sets like
the observed one and its perturbations (other groups, subsets, bootstraps).

Gaussian and lognormal models hold each group as its *moment sums* (``group_data="moments"``, the
:class:`~amortbayes.formula.gaussian.MomentsLayout`): the count, sums and sums of products of the distinct design
columns and the response, less the user data's column means.  Those are the sufficient
statistics of a group, so the simulator draws them exactly without making rows
(``D'y ~ N(D'D beta, sigma^2 D'D)`` and ``y'y`` from the projection of the noise and a
chi-squared remainder of ``N_j - rank(D)`` degrees of freedom) and the likelihood, the
groups' exact marginals and the pilot read them; a step's cost does not grow with the rows.
``group_data="rows"`` keeps the rows (the other families always do).

References:
    Lewandowski, Kurowicka & Joe (2009), Generating random correlation matrices based on
    vines and extended onion method, J. Multivariate Analysis 100 (the LKJ density).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pandas as pd
import scipy.special as sp
import torch

from amortbayes.formula import gaussian
from amortbayes.formula.families import Family, get_family
from amortbayes.formula.priors import Prior, combine_priors, default_priors
from amortbayes.formula.terms import FormulaTerms
from amortbayes.sensitivity import ContextSpace
from amortbayes.simulation import MultilevelModel, draw_contexts, pad_datasets, with_context

# families whose likelihood to a power is again theirs, so that a context can power it by simulation
POWERED_FAMILIES = ("gaussian", "student")


def lkj_log_normalizer(m: int, eta: float) -> float:
    """``log c(m, eta)`` of the LKJ density ``det(Omega)^(eta - 1) / c`` over an m x m correlation matrix's entries.

    Example:
        >>> round(math.exp(lkj_log_normalizer(3, 1.0)), 6) == round(math.pi**2 / 2, 6)  # the elliptope's volume
        True
    """
    out = 0.0
    for k in range(1, m):
        out += (2 * eta - 2 + m - k) * (m - k) * math.log(2.0)
        a = eta + (m - k - 1) / 2
        out += (m - k) * float(sp.betaln(a, a))
    return out


class FormulaModel(MultilevelModel):
    """The two-level model of a parsed formula, family and priors (see the module docstring).

    Args:
        terms: the parsed formula (:func:`~amortbayes.formula.parse_terms`).
        family: a family name or object.
        priors: the user's prior statements (the rest are brms' data-scaled defaults).
        n_groups: range of J in training (default: half to one and a half times the observed J).
        n_obs: range of N_j in training (default: the observed smallest to largest group).
            With the default, each simulated group takes all rows of one of the user's groups
            (N_j as observed); a range given here resamples a group's rows to sizes drawn
            uniformly from it instead (rows layout only).
        group_data: ``"moments"`` (default for gaussian and lognormal) or ``"rows"``.
    """

    name = "formula"

    def __init__(self, terms: FormulaTerms, family: str | Family = "gaussian", priors: list[Prior] | None = None,
                 n_groups: tuple[int, int] | None = None, n_obs: tuple[int, int] | None = None,
                 group_data: str | None = None, contexts: dict | None = None):
        if terms.group is None:
            raise ValueError("FormulaModel needs a group term such as (1 | g); formulas without one are single-level")
        self.terms = terms
        self.family = get_family(family)
        self.family.check_response(terms.y, terms.trials)
        if terms.trials is not None and self.family.name != "binomial":
            raise ValueError(f"the response gives trials (trials() or cbind()), which only family 'binomial' "
                             f"reads; the family is {self.family.name!r}")
        # binomial rows carry their number of trials as a covariate: [X, Z, trials, y]
        self._trials = self.family.name == "binomial"
        self.priors = combine_priors(priors, default_priors(terms, self.family.link, self.family.name == "lognormal",
                                                             self.family.dpars), terms)
        P, K = len(terms.fixed_names), len(terms.group_names)
        self.P, self.K = P, K
        g = terms.group
        self.blocks = list(terms.blocks)
        self.cor_pairs = [(b[i], b[k]) for b in self.blocks for i in range(len(b)) for k in range(i + 1, len(b))]
        names = [f"b_{n}" for n in terms.fixed_names] + [f"sd_{g}__{n}" for n in terms.group_names]
        names += [f"cor_{g}__{terms.group_names[i]}__{terms.group_names[k]}" for i, k in self.cor_pairs]
        names += list(self.family.dpars)
        self.parameter_names = tuple(names)
        self.parameter_support = (("real",) * P + ("positive",) * K + ("correlation",) * len(self.cor_pairs)
                                  + self.family.dpar_support)
        self.local_parameter_names = tuple(f"r_{g}[.,{n}]" for n in terms.group_names)
        self.local_parameter_support = ("real",) * K
        # the response as the networks see it: lognormal rows hold log(y) (a simulated y = exp(eta + sigma z)
        # overflows under brms' wide defaults, and the likelihood is the normal one of log y less log y);
        # count rows carry log1p(y) besides y (a prior predictive up to 1e8 standardizes counts of 0-100 to zero)
        self._log_response = self.family.name == "lognormal"
        self._count_feature = self.family.name in ("poisson", "negbinomial")
        self._n_design = P + K + int(self._trials)
        resp = terms.response
        self.data_names = tuple(f"X:{n}" for n in terms.fixed_names) + tuple(f"Z:{n}" for n in terms.group_names) \
            + (("trials",) if self._trials else ()) + ((f"log1p({resp})",) if self._count_feature else ()) \
            + ((f"log({resp})",) if self._log_response else (resp,))
        self.gaussian_local_posterior = self.family.name in ("gaussian", "lognormal")  # lognormal: gaussian in log y
        if self.gaussian_local_posterior:  # importance sampling integrates the group effects out exactly
            self.group_log_marginal = functools.partial(gaussian.group_log_marginal, self)
            self.sample_local_posterior = functools.partial(gaussian.sample_local_posterior, self)
        # the user's groups as padded design rows [X, Z] (the response left off), resampled by simulate_data
        design, mask = pad_datasets([g[:, : self._n_design] for g in self.observed_rows()])
        sizes = mask.sum(1).astype(np.int64)
        self._user_sizes = torch.as_tensor(sizes, dtype=torch.long)
        self._user_design = torch.from_numpy(design).float()
        J = len(sizes)
        self.n_groups = tuple(n_groups) if n_groups else (max(2, J // 2), max(2, J + J // 2))
        self._resample_sizes = n_obs is not None  # sizes drawn from n_obs (rows resampled) instead of the users'
        self.n_obs = tuple(n_obs) if n_obs else (int(sizes.min()), int(sizes.max()))
        if group_data is None:
            group_data = "moments" if self.gaussian_local_posterior else "rows"
        if group_data not in ("rows", "moments"):
            raise ValueError(f"group_data must be 'rows' or 'moments', got {group_data!r}")
        if group_data == "moments" and not self.gaussian_local_posterior:
            raise ValueError(f"family {self.family.name!r} depends on a group's rows beyond their moments; "
                             "group_data='moments' is for gaussian and lognormal models")
        if group_data == "moments" and self._resample_sizes:
            raise ValueError("n_obs= resamples a group's rows to other sizes, which needs group_data='rows'")
        self.group_data = group_data
        self.layout: gaussian.MomentsLayout | None = None
        if group_data == "moments":
            self.layout = gaussian.MomentsLayout(self)
            self.row_names, self.data_names = self.layout.row_names, self.layout.data_names
            self.row_shift = tuple(float(v) for v in self.layout.shift)
            # every group at once (importance_draws and logo use them in place of a loop over groups)
            self.group_log_marginals = self.group_log_marginal
            self.sample_local_posteriors = self.sample_local_posterior
        self._xbar = torch.as_tensor(terms.X.mean(0), dtype=torch.float64)
        self._intercept = terms.fixed_names.index("Intercept") if "Intercept" in terms.fixed_names else None
        self._prior_of = self._assign_priors()
        self.contexts = self._check_contexts(contexts)

    def _assign_priors(self) -> list[Prior]:
        """One prior per scalar global (b, sd, dpars), most specific statement first; cor gets its lkj."""
        def find(class_: str, coef: str = "") -> Prior:
            specific = [p for p in self.priors if p.class_ == class_ and p.coef == coef]
            general = [p for p in self.priors if p.class_ == class_ and p.coef == ""]
            return (specific or general)[0]

        out = []
        for n in self.terms.fixed_names:
            out.append(find("Intercept") if n == "Intercept" else find("b", n))
        out += [find("sd", n) for n in self.terms.group_names]
        out += [find(d) for d in self.family.dpars]
        return out

    def _check_contexts(self, contexts: dict | None) -> dict | None:
        """Formula models take power-scaling contexts: of the prior (any), of the likelihood (gaussian, student)."""
        space = ContextSpace(contexts)
        for name, d in space.spec.items():
            if "choices" in d:
                raise ValueError(f"context {name!r}: formula models take power_scale() contexts only")
            low = d["range"][0]
            if d["power"] == "likelihood" and self.family.name not in POWERED_FAMILIES:
                raise ValueError(f"context {name!r}: the {self.family.name} likelihood to a power is not a {self.family.name} "
                                 f"likelihood, so it cannot be simulated; likelihood powers take the families "
                                 f"{list(POWERED_FAMILIES)} (prior powers take every family)")
            if d["power"] == "likelihood" and self.family.name == "student" and low <= 0.5:
                raise ValueError(f"context {name!r}: a student likelihood to the power {low} may have no proper "
                                 "density (nu >= 1); use a range above 0.5")
            if d["power"] == "prior":
                worst = max([p.lowest_power() for p in self._prior_of]
                            + [p.lowest_power() for p in self.priors if p.class_ == "cor"])
                if low <= worst:
                    raise ValueError(f"context {name!r}: a prior of the model has no proper density at the power "
                                     f"{low} (needs more than {worst:.3g}); narrow the range")
        return space.spec or None

    def _powers(self, context, n: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Each data set's prior and likelihood power (None where the model has no such context)."""
        space = ContextSpace(self.contexts)
        out = []
        for component in ("prior", "likelihood"):
            name = space.power(component)
            out.append(None if name is None or not context or name not in context
                       else torch.as_tensor(context[name], dtype=torch.float64).reshape(n))
        return out[0], out[1]

    def powered_likelihood(self, theta_global: torch.Tensor, beta: torch.Tensor | None) -> torch.Tensor:
        """Globals whose family parameters make each row's density the normalized power ``beta`` of the model's.

        gaussian: ``sigma / sqrt(beta)``; student: ``nu' = beta (nu + 1) - 1``,
        ``sigma sqrt(nu / nu')``.  The implied posterior is priorsense's power-scaled one times
        ``Z(theta, beta)^-N`` (:meth:`log_power_normalizer`).
        """
        if beta is None:
            return theta_global
        t = theta_global.clone()
        names = list(self.parameter_names)
        b = beta.to(t.dtype)
        s = names.index("sigma")
        if self.family.name == "student":
            v = names.index("nu")
            nu = t[:, v]
            nu_p = b * (nu + 1) - 1
            t[:, s] = t[:, s] * torch.sqrt(nu / nu_p)
            t[:, v] = nu_p
        else:
            t[:, s] = t[:, s] / torch.sqrt(b)
        return t

    def log_power_normalizer(self, theta_global: torch.Tensor, beta: float) -> torch.Tensor:
        """``log Z(theta, beta)`` of one row, ``Z = integral p(y | theta)^beta dy`` (gaussian).

        Example: for sigma = 1, ``Z = (2 pi)^((1 - beta) / 2) / sqrt(beta)``.
        """
        if self.family.name != "gaussian":
            raise ValueError(f"the power normalizer is written for gaussian rows, not {self.family.name}")
        sigma = theta_global[..., list(self.parameter_names).index("sigma")].double()
        return (1 - beta) / 2 * torch.log(2 * math.pi * sigma**2) - 0.5 * math.log(beta)

    @property
    def lkj_eta(self) -> float:
        cor = [p for p in self.priors if p.class_ == "cor"]
        return cor[0].args[0] if cor else 1.0

    def config(self) -> dict[str, Any]:
        return {"formula": self.terms.formula, "family": self.family.name,
                "priors": [{"prior": p.stan(), "class": p.class_, "coef": p.coef, "group": p.group} for p in self.priors],
                "n_groups": list(self.n_groups), "n_obs": list(self.n_obs) if self._resample_sizes else None,
                "group_data": self.group_data, **({"contexts": self.contexts} if self.contexts else {})}

    # -- globals -----------------------------------------------------------------------------------------------
    def _scalar_columns(self) -> list[int]:
        P, K, C = self.P, self.K, len(self.cor_pairs)
        return list(range(P + K)) + list(range(P + K + C, P + K + C + len(self.family.dpars)))

    def sample_global(self, n: int, generator: torch.Generator | None = None, context=None) -> torch.Tensor:
        """``(n, G)`` prior draws; with a prior-power context each draw from the prior to its power (normalized)."""
        P, K, C = self.P, self.K, len(self.cor_pairs)
        alpha = self._powers(context, n)[0]
        power = None if alpha is None else alpha.numpy()
        out = torch.zeros(n, len(self.parameter_names), dtype=torch.float64)
        for col, p in zip(self._scalar_columns(), self._prior_of):
            out[:, col] = p.sample(n, generator, power)
        if self._intercept is not None:  # the prior is on the intercept of centred predictors
            out[:, self._intercept] -= out[:, :P] @ self._xbar - out[:, self._intercept] * self._xbar[self._intercept]
        if C:
            out[:, P + K: P + K + C] = self._sample_cor(n, generator, alpha)
        return out

    def _sample_cor(self, n: int, generator: torch.Generator | None, alpha: torch.Tensor | None = None) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if generator is not None else None
        cols = []
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            for b in self.blocks:
                if len(b) < 2:
                    continue
                if alpha is None:
                    L = torch.distributions.LKJCholesky(len(b), self.lkj_eta).sample((n,)).double()
                else:  # LKJ(eta)^alpha is LKJ(alpha (eta - 1) + 1)
                    eta = (alpha * (self.lkj_eta - 1) + 1).float()
                    L = torch.distributions.LKJCholesky(len(b), eta).sample().double()
                omega = L @ L.transpose(-1, -2)
                cols += [omega[:, i, k] for i in range(len(b)) for k in range(i + 1, len(b))]
        return torch.stack(cols, -1)

    def _omega(self, theta_global: torch.Tensor) -> torch.Tensor:
        P, K = self.P, self.K
        omega = torch.eye(K, dtype=theta_global.dtype).expand(*theta_global.shape[:-1], K, K).clone()
        for c, (i, k) in enumerate(self.cor_pairs):
            omega[..., i, k] = omega[..., k, i] = theta_global[..., P + K + c]
        return omega

    def global_log_prior(self, theta_global: torch.Tensor) -> torch.Tensor:
        t = theta_global
        P = self.P
        if self._intercept is not None:  # back to the centred intercept (a shear: Jacobian 1)
            t = t.clone()
            t[..., self._intercept] = theta_global[..., :P] @ self._xbar.to(t.dtype) \
                - theta_global[..., self._intercept] * self._xbar[self._intercept] + theta_global[..., self._intercept]
        lp = sum(p.log_prob(t[..., col]) for col, p in zip(self._scalar_columns(), self._prior_of))
        if self.cor_pairs:
            omega = self._omega(theta_global)
            for b in self.blocks:
                if len(b) < 2:
                    continue
                sub = omega[..., list(b), :][..., list(b)]
                logdet = torch.linalg.slogdet(sub)
                lp = lp + torch.where(logdet[0] > 0, (self.lkj_eta - 1) * logdet[1], torch.full_like(logdet[1], -math.inf)) \
                    - lkj_log_normalizer(len(b), self.lkj_eta)
        return lp

    # -- group effects ------------------------------------------------------------------------------------------
    def _scale_tril(self, theta_global: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cholesky factor of the group effects' covariance, and where it has none (a correlation at +-1 in floats)."""
        P, K = self.P, self.K
        sd = theta_global[..., P: P + K]
        cov = sd[..., :, None] * self._omega(theta_global) * sd[..., None, :]
        eye = torch.eye(K, dtype=cov.dtype)
        L, info = torch.linalg.cholesky_ex(cov + 1e-12 * eye)
        bad = info > 0
        return torch.where(bad[..., None, None], eye, L), bad

    def sample_local(self, theta_global, n_groups, generator=None) -> torch.Tensor:
        z = torch.randn(*theta_global.shape[:-1], n_groups, self.K, generator=generator, dtype=theta_global.dtype)
        return torch.einsum("...ab,...jb->...ja", self._scale_tril(theta_global)[0], z)

    def local_log_prior(self, theta_global, theta_local) -> torch.Tensor:
        """``log MVN(r_j | 0, Sigma)`` per group; ``-inf`` where Sigma is singular (an adaptive proposal at |cor| = 1)."""
        L, bad = self._scale_tril(theta_global)
        # L^-1 once per global draw, then a product per group (a triangular solve per group and
        # draw dominated importance sampling: 8,000 draws x 8 local draws x 59 groups)
        L_inv = torch.linalg.solve_triangular(L, torch.eye(self.K, dtype=L.dtype).expand_as(L), upper=False)
        z = torch.einsum("...ab,...jb->...ja", L_inv, theta_local.to(L.dtype))
        logdet = torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)[..., None]
        lp = -0.5 * (z * z).sum(-1) - logdet - 0.5 * self.K * math.log(2 * math.pi)
        return torch.where(bad[..., None], torch.full_like(lp, -math.inf), lp)


    # -- data ---------------------------------------------------------------------------------------------------
    def _eta(self, theta_global, theta_local, x):
        P, K = self.P, self.K
        b = theta_global[..., None, None, :P]
        return (x[..., :P] * b).sum(-1) + (x[..., P: P + K] * theta_local[..., :, None, :]).sum(-1)

    def _dpars(self, theta_global) -> dict[str, torch.Tensor]:
        start = self.P + self.K + len(self.cor_pairs)
        return {d: theta_global[..., None, None, start + i] for i, d in enumerate(self.family.dpars)}

    @property
    def info(self):
        """The model's :class:`~amortbayes.simulation.ModelInfo`; a moments layout has one row per group."""
        import dataclasses

        from amortbayes.simulation import model_info

        info = model_info(self)
        return dataclasses.replace(info, n_obs=(1, 1)) if self.group_data == "moments" else info

    def simulate(self, batch_size: int, generator: torch.Generator | None = None,
                 n_groups: int | tuple[int, int] | None = None, n_obs: int | tuple[int, int] | None = None):
        """A batch of data sets whose groups are whole groups of the user's data (rows or moment sums).

        ``J`` is drawn from ``n_groups``; each group takes all rows of a user group drawn at
        random (so ``N_j`` is distributed as observed).  With ``n_obs`` (or a model built with
        ``n_obs=``) the sizes are drawn from that range and the rows resampled instead
        (:meth:`simulate_data`).
        """
        if n_obs is not None or self._resample_sizes:
            if self.group_data == "moments":
                raise ValueError("a moments layout simulates whole groups of the user's data; n_obs= needs "
                                 "group_data='rows'")
            return super().simulate(batch_size, generator, n_groups, n_obs)
        from amortbayes.simulation import _size_range

        jlo, jhi = _size_range(self.n_groups if n_groups is None else n_groups)
        space, context = draw_contexts(self, batch_size, generator)
        theta_g = self.sample_global(batch_size, generator, context)
        theta_y = self.powered_likelihood(theta_g, self._powers(context, batch_size)[1])  # the responses' globals
        counts = torch.randint(jlo, jhi + 1, (batch_size,), generator=generator)
        j_max = int(counts.max())
        group_mask = (torch.arange(j_max)[None, :] < counts[:, None]).float()
        user = torch.randint(0, len(self._user_sizes), (batch_size, j_max), generator=generator)
        theta_l = self.sample_local(theta_g, j_max, generator)
        if self.group_data == "moments":
            x = self.layout.simulate(theta_y, theta_l, user, generator)
            mask = group_mask[..., None]
        else:
            sizes = self._user_sizes[user] * group_mask.long()
            n_max = int(sizes.max())
            rows = self._user_design[user, :n_max]  # the user's rows in their order (padding last)
            mask = (torch.arange(n_max)[None, None, :] < sizes[..., None]).float()
            x = self._simulate_response(theta_y, theta_l, rows, generator)
        theta_l = theta_l.float()
        batch = {"theta_global": theta_g.float(), "theta_local": theta_l * group_mask[..., None],
                 "x": x.float() * mask[..., None], "mask": mask, "group_mask": group_mask}
        return with_context(batch, space, context)

    def simulate_data(self, theta_global, theta_local, n_obs, generator=None, sizes=None, context=None) -> torch.Tensor:
        b, j = theta_local.shape[:2]
        theta_global = self.powered_likelihood(theta_global, self._powers(context, b)[1])
        user = torch.randint(0, len(self._user_sizes), (b, j), generator=generator)
        n_user = self._user_sizes[user]  # (b, j)
        # a random order of the group's own rows (padding last), taken cyclically: without
        # replacement up to the group's size, so a simulated group of the user's size holds
        # exactly that group's rows (sleepstudy's Days 0..9 in every group stay so)
        n_max = self._user_design.shape[1]
        keys = torch.rand(b, j, n_max, generator=generator)
        keys = torch.where(torch.arange(n_max) < n_user[..., None], keys, torch.full_like(keys, 2.0))
        order = keys.argsort(-1)
        pick = order.gather(-1, torch.arange(n_obs).expand(b, j, n_obs) % n_user[..., None])
        rows = self._user_design[user[..., None], pick]  # (b, j, n_obs, P + K)
        return self._simulate_response(theta_global, theta_local, rows, generator)

    def _simulate_response(self, theta_global, theta_local, rows, generator) -> torch.Tensor:
        """Rows ``[design, response columns]`` from design rows ``(B, J, N, P + K (+ trials))``."""
        rows64 = rows.double()
        eta = self._eta(theta_global.double(), theta_local.double(), rows64)
        dpars = self._dpars(theta_global.double())
        if self._log_response:  # log y = eta + sigma z, without the overflow of exp
            y = get_family("gaussian").simulate(eta, dpars, generator)
        else:
            y = self.family.simulate(eta, dpars, generator, self._trials_of(rows64))
        return torch.cat([rows, *self._response_columns(y)], -1)

    def _response_columns(self, y: torch.Tensor) -> list[torch.Tensor]:
        """The row's last columns from the response as stored (log y for lognormal): the count feature, then y."""
        cols = [torch.log1p(y).float()[..., None]] if self._count_feature else []
        return cols + [y.float()[..., None]]

    def pointwise_log_lik(self, theta_global, theta_local, x, mask) -> torch.Tensor:
        """``log p(y_ji | theta)`` of every row, shape ``x.shape[:-1]`` (0 on padded rows)."""
        eta = self._eta(theta_global, theta_local, x.to(theta_global.dtype))
        y = x[..., -1].to(theta_global.dtype)
        trials = self._trials_of(x.to(theta_global.dtype))
        if trials is not None:  # padded rows: 0 successes of 0 trials
            trials = torch.where(mask > 0, trials, torch.zeros_like(trials))
        y = torch.where(mask > 0, y, self._safe_y(y))
        if self._log_response:  # rows hold log y: log LN(y | eta, sigma) = log N(log y | eta, sigma) - log y
            ll = get_family("gaussian").log_lik(y, eta, self._dpars(theta_global)) - y
        else:
            ll = self.family.log_lik(y, eta, self._dpars(theta_global), trials)
        return ll * mask

    def _trials_of(self, x: torch.Tensor) -> torch.Tensor | None:
        """The trials column of binomial rows (None for the other families)."""
        return x[..., self.P + self.K] if self._trials else None

    def log_likelihood(self, theta_global, theta_local, x, mask) -> torch.Tensor:
        """``log p(x_j | theta)`` per group, shape ``x.shape[:-2]``: from the rows, or exactly from a moments layout."""
        if self.layout is not None:
            return self.layout.log_likelihood(theta_global, theta_local, x, mask)
        return self.pointwise_log_lik(theta_global, theta_local, x, mask).sum(-1)

    @property
    def n_response_columns(self) -> int:
        """The columns at the end of a row (or of the row columns) that hold the response: 2 for counts (log1p y, y)."""
        return 2 if self._count_feature else 1

    @property
    def likelihood_family(self) -> Family:
        """The family of the rows' response column (gaussian for lognormal, whose rows hold log y)."""
        return get_family("gaussian") if self._log_response else self.family

    def local_proposal(self, theta_global: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, m: int,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``m`` draws of one group's effects per global draw from its Laplace approximation, and their log density.

        The proposal ``MultilevelAmortizer`` integrates a group's effects out with
        (:func:`~amortbayes.formula.laplace.laplace_local_proposal`), instead of its local flow.
        """
        from amortbayes.formula.laplace import laplace_local_proposal

        return laplace_local_proposal(self, theta_global, x, mask, m, generator)

    def informative_columns(self) -> tuple[int, ...]:
        """The columns that carry information: the design's columns less constants and copies, and the response's.

        Simulated designs resample the user's rows, so a column constant in the user's data
        (an intercept's ones) is constant in every simulation, and a group term's column
        equal to a fixed-effect one (``Days`` in ``Days + (Days | Subject)``) repeats it.
        Data columns of the rows layout, row columns (:attr:`row_names`) of the moments layout.

        Example:
            >>> from amortbayes.data import load_sleepstudy
            >>> from amortbayes.formula import parse_terms
            >>> terms = parse_terms("Reaction ~ Days + (Days | Subject)", load_sleepstudy())
            >>> m = FormulaModel(terms, group_data="rows")
            >>> [m.data_names[i] for i in m.informative_columns()]
            ['X:Days', 'Reaction']
            >>> [FormulaModel(terms).row_names[i] for i in FormulaModel(terms).informative_columns()]
            ['Days', 'Reaction']
        """
        if self.layout is not None:  # the distinct design columns less constants, and the response
            rows = self.layout.row_columns(self._rows())
            return tuple(k for k in range(rows.shape[1]) if np.ptp(rows[:, k]) > 0 or k == rows.shape[1] - 1)
        design = self._rows()[:, : self._n_design]
        keep: list[int] = []
        for k in range(design.shape[1]):
            column = design[:, k]
            if np.ptp(column) == 0 or any(np.array_equal(column, design[:, i]) for i in keep):
                continue
            keep.append(k)
        return tuple(keep) + tuple(range(self._n_design, len(self.data_names)))

    def _safe_y(self, y: torch.Tensor) -> torch.Tensor:
        """A response value inside every family's support, for padded rows (masked out after)."""
        return torch.ones_like(y) if self.family.name == "bernoulli" else torch.zeros_like(y)

    def terms_data(self, data: pd.DataFrame) -> pd.DataFrame:
        """The columns of ``data`` the formula uses, rows with missing values dropped (what :meth:`AmortizedFit.save` keeps)."""
        import re

        used = [c for c in data.columns if re.search(rf"(?<![\w.]){re.escape(str(c))}(?![\w.])", self.terms.formula)]
        return data[used].dropna().reset_index(drop=True)

    def observed_frame(self, terms: FormulaTerms | None = None) -> pd.DataFrame:
        """The user's data (or ``terms`` of new data) as the long frame ``prepare_multilevel`` reads (one row per group for moments)."""
        t = self.terms if terms is None else terms
        if self.group_data == "moments":
            frame = pd.DataFrame(np.concatenate(self.observed(terms)), columns=list(self.data_names))
            frame[t.group] = pd.Categorical(list(t.levels), categories=list(t.levels))
            return frame
        frame = pd.DataFrame(self._rows(terms), columns=list(self.data_names))
        frame[t.group] = pd.Categorical(np.asarray(t.levels)[t.group_index], categories=list(t.levels))
        return frame

    def observed(self, terms: FormulaTerms | None = None) -> list[np.ndarray]:
        """The user's data (or ``terms``') in the model's layout, one array per group in level order.

        Rows ``(N_j, F)`` (:meth:`observed_rows`), or for a moments layout one ``(1, M)`` row of
        moment sums (computed in float64 from the rows less :attr:`row_shift`).
        """
        groups = self.observed_rows(terms)
        return groups if self.layout is None else self.layout.moment_rows(groups)

    def observed_rows(self, terms: FormulaTerms | None = None) -> list[np.ndarray]:
        """The user's data (or ``terms``') as one ``(N_j, F)`` array of rows ``[X, Z, y]`` per group, in level order."""
        t = self.terms if terms is None else terms
        rows = self._rows(terms)
        return [rows[t.group_index == j] for j in range(len(t.levels))]

    def _rows(self, terms: FormulaTerms | None = None) -> np.ndarray:
        """``(N, F)`` data rows ``[X, Z, (trials), (log1p y), y or log y]`` of the model's data or of ``terms``."""
        t = self.terms if terms is None else terms
        if self._trials and t.trials is None:
            raise ValueError("family 'binomial' needs the number of trials: 'successes | trials(n) ~ ...'")
        extra = [t.trials] if self._trials else []
        y = np.asarray(t.y, dtype=float)
        if self._count_feature:
            extra.append(np.log1p(y))
        return np.column_stack([t.X, t.Z, *extra, np.log(y) if self._log_response else y])
