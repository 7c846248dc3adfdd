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

Gaussian and lognormal models hold each group as its *moment sums* (``group_data="moments"``,
:mod:`amortbayes.moments`): the count, sums and sums of products of the distinct design
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

import math
from typing import Any

import numpy as np
import pandas as pd
import scipy.special as sp
import torch

from amortbayes.formula import smallmatrix as small
from amortbayes.formula.families import Family, get_family
from amortbayes.formula.priors import Prior, combine_priors, default_priors
from amortbayes.formula.terms import FormulaTerms
from amortbayes.moments import augmented_gram, gram_to_moments, moment_names, row_moments, sample_chi2
from amortbayes.simulation import MultilevelModel, pad_datasets


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
                 group_data: str | None = None):
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
            self.group_log_marginal = self._gaussian_group_log_marginal
            self.sample_local_posterior = self._gaussian_sample_local_posterior
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
        if group_data == "moments":
            self._setup_moments()
        self._xbar = torch.as_tensor(terms.X.mean(0), dtype=torch.float64)
        self._intercept = terms.fixed_names.index("Intercept") if "Intercept" in terms.fixed_names else None
        self._prior_of = self._assign_priors()

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

    @property
    def lkj_eta(self) -> float:
        cor = [p for p in self.priors if p.class_ == "cor"]
        return cor[0].args[0] if cor else 1.0

    def config(self) -> dict[str, Any]:
        return {"formula": self.terms.formula, "family": self.family.name,
                "priors": [{"prior": p.stan(), "class": p.class_, "coef": p.coef, "group": p.group} for p in self.priors],
                "n_groups": list(self.n_groups), "n_obs": list(self.n_obs) if self._resample_sizes else None,
                "group_data": self.group_data}

    # -- globals -----------------------------------------------------------------------------------------------
    def _scalar_columns(self) -> list[int]:
        P, K, C = self.P, self.K, len(self.cor_pairs)
        return list(range(P + K)) + list(range(P + K + C, P + K + C + len(self.family.dpars)))

    def sample_global(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        P, K, C = self.P, self.K, len(self.cor_pairs)
        out = torch.zeros(n, len(self.parameter_names), dtype=torch.float64)
        for col, p in zip(self._scalar_columns(), self._prior_of):
            out[:, col] = p.sample(n, generator)
        if self._intercept is not None:  # the prior is on the intercept of centred predictors
            out[:, self._intercept] -= out[:, :P] @ self._xbar - out[:, self._intercept] * self._xbar[self._intercept]
        if C:
            out[:, P + K: P + K + C] = self._sample_cor(n, generator)
        return out

    def _sample_cor(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if generator is not None else None
        cols = []
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            for b in self.blocks:
                if len(b) < 2:
                    continue
                L = torch.distributions.LKJCholesky(len(b), self.lkj_eta).sample((n,)).double()
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


    # -- the moments layout (gaussian, lognormal) ----------------------------------------------------------------
    def _setup_moments(self) -> None:
        """Row columns, their map from the design, the shift, and each user group's design Gram matrix."""
        t = self.terms
        names = list(t.fixed_names) + list(t.group_names)
        design = self._rows()[:, : self.P + self.K]
        cols: list[str] = []  # distinct design columns other than an intercept's ones
        aug: list[int] = []  # design column -> column of [1, row columns]
        for k, name in enumerate(names):
            if name == "Intercept" and np.all(design[:, k] == 1.0):
                aug.append(0)
            elif name in cols and np.array_equal(design[:, k], design[:, names.index(name)]):
                aug.append(1 + cols.index(name))  # the same term in X and in Z (Days in Days + (Days | g))
            else:
                cols.append(name if name not in cols else f"{name}.{k}")
                aug.append(len(cols))
        self._design_aug = torch.tensor(aug, dtype=torch.long)
        self._design_cols = [names.index(c) if c in names else int(c.rsplit(".", 1)[1]) for c in cols]
        self.row_names = tuple(cols) + (self.data_names[-1],)
        self._y_aug = len(cols) + 1
        rows = self._row_columns(self._rows())
        self.row_shift = tuple(float(v) for v in rows.mean(0))
        self._shift = torch.tensor(self.row_shift, dtype=torch.float64)
        self.data_names = moment_names(self.row_names)
        # each user group's Gram matrix of [1, design columns], its square root and rank (for D'y ~ N(., sigma^2 D'D))
        groups = [self._row_columns(g) for g in self.observed_rows()]
        a = len(cols) + 1
        gram_ = torch.stack([self._design_gram(g) for g in groups])
        lam, vec = torch.linalg.eigh(gram_)
        tol = lam.amax(-1, keepdim=True).clamp_min(1e-300) * a * 1e-12
        positive = lam > tol
        self._user_gram = gram_
        self._user_root = vec * torch.where(positive, lam, torch.zeros_like(lam)).sqrt()[..., None, :]  # V sqrt(lambda)
        self._user_positive = positive
        self._user_rank = positive.sum(-1)
        # all groups at once (importance_draws and logo use them in place of a loop over groups)
        self.group_log_marginals = self._gaussian_group_log_marginal
        self.sample_local_posteriors = self._gaussian_sample_local_posterior

    @staticmethod
    def _design_gram(rows: np.ndarray) -> torch.Tensor:
        d = torch.as_tensor(np.column_stack([np.ones(len(rows)), rows[:, :-1]]), dtype=torch.float64)
        return d.T @ d

    def _row_columns(self, rows: np.ndarray) -> np.ndarray:
        """The moments layout's row columns (distinct design columns, response) of rows ``[X, Z, y]``."""
        return np.column_stack([rows[:, self._design_cols], rows[:, -1]])

    def _coefficients(self, theta_global: torch.Tensor, theta_local: torch.Tensor) -> torch.Tensor:
        """Each group's coefficients on the columns ``[1, design columns]``, ``(..., J, 1 + D)``."""
        P = self.P
        b = theta_global[..., None, :P].expand(*theta_local.shape[:-1], P)
        both = torch.cat([b, theta_local.to(b.dtype)], -1)
        out = torch.zeros(*both.shape[:-1], self._y_aug, dtype=both.dtype, device=both.device)
        return out.index_add(-1, self._design_aug.to(both.device), both)

    def _simulate_moments(self, theta_global, theta_local, user, generator) -> torch.Tensor:
        """Moment rows ``(B, J, 1, M)`` of groups that take the designs of the user groups ``user (B, J)``.

        With ``D`` the group's columns ``[1, design]`` and ``y = D beta + sigma e``:
        ``D'y = D'D beta + sigma V sqrt(lambda) z`` (``D'D = V lambda V'``, so ``D'e ~ N(0, D'D)``),
        ``y'y = beta'D'D beta + 2 sigma beta'V sqrt(lambda) z + sigma^2 (|z_+|^2 + chi2_{N - rank D})``:
        ``|z_+|^2`` is the noise's squared length in the span of ``D``, the chi-squared its rest.
        Exact in distribution, in float64, without rows.
        """
        tg, tl = theta_global.double(), theta_local.double()
        beta = self._coefficients(tg, tl)  # (B, J, a)
        gram_, root, positive = self._user_gram[user], self._user_root[user], self._user_positive[user]
        n = gram_[..., 0, 0]
        sigma = self._dpars(tg)["sigma"][..., 0]  # (B, 1)
        z = torch.randn(beta.shape, generator=generator, dtype=torch.float64) * positive
        noise = (root @ z[..., None])[..., 0]  # D'e
        mean = (gram_ @ beta[..., None])[..., 0]
        dy = mean + sigma[..., None] * noise
        rest = sample_chi2(n - self._user_rank[user], generator)
        yy = (beta * mean).sum(-1) + 2 * sigma * (beta * noise).sum(-1) + sigma**2 * ((z * z).sum(-1) + rest)
        a = self._y_aug
        full = torch.zeros(*beta.shape[:-1], a + 1, a + 1, dtype=torch.float64)
        full[..., :a, :a] = gram_
        full[..., :a, a] = dy
        full[..., a, :a] = dy
        full[..., a, a] = yy
        return gram_to_moments(full, self._shift)[..., None, :]

    def _group_gram(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Float64 Gram matrix of ``[1, design columns, response]`` per group of a moments layout, ``(..., a + 1, a + 1)``."""
        return augmented_gram(x[..., 0, :].double() * mask[..., 0, None].double(), self._shift)

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
        theta_g = self.sample_global(batch_size, generator)
        counts = torch.randint(jlo, jhi + 1, (batch_size,), generator=generator)
        j_max = int(counts.max())
        group_mask = (torch.arange(j_max)[None, :] < counts[:, None]).float()
        user = torch.randint(0, len(self._user_sizes), (batch_size, j_max), generator=generator)
        theta_l = self.sample_local(theta_g, j_max, generator)
        if self.group_data == "moments":
            x = self._simulate_moments(theta_g, theta_l, user, generator)
            mask = group_mask[..., None]
        else:
            sizes = self._user_sizes[user] * group_mask.long()
            n_max = int(sizes.max())
            rows = self._user_design[user, :n_max]  # the user's rows in their order (padding last)
            mask = (torch.arange(n_max)[None, None, :] < sizes[..., None]).float()
            x = self._simulate_response(theta_g, theta_l, rows, generator)
        theta_l = theta_l.float()
        return {"theta_global": theta_g.float(), "theta_local": theta_l * group_mask[..., None],
                "x": x.float() * mask[..., None], "mask": mask, "group_mask": group_mask}

    def simulate_data(self, theta_global, theta_local, n_obs, generator=None, sizes=None) -> torch.Tensor:
        b, j = theta_local.shape[:2]
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
        """``log p(x_j | theta)`` per group, shape ``x.shape[:-2]``: from the rows, or exactly from a moments layout.

        For moments, with ``g = [beta_j, -1]`` on ``[1, design, y]`` and their Gram matrix ``G``:
        ``-N/2 log(2 pi sigma^2) - g'G g / (2 sigma^2)`` (less ``sum log y`` for lognormal).
        """
        if self.group_data == "rows":
            return self.pointwise_log_lik(theta_global, theta_local, x, mask).sum(-1)
        tg = theta_global.double()
        G = self._group_gram(x, mask)  # (..., J, a + 1, a + 1)
        beta = self._coefficients(tg, theta_local.double())
        g = torch.cat([beta, -torch.ones_like(beta[..., :1])], -1)
        ss = (g[..., None, :] @ G @ g[..., :, None])[..., 0, 0]
        sigma = self._dpars(tg)["sigma"][..., 0]  # (..., 1): broadcasts over the groups
        n = G[..., 0, 0]
        ll = -0.5 * n * torch.log(2 * math.pi * sigma**2) - 0.5 * ss / sigma**2
        if self._log_response:
            ll = ll - G[..., 0, -1]
        return ll * (mask[..., 0] > 0)

    def _gaussian_group(self, theta_global: torch.Tensor, x: torch.Tensor, mask: torch.Tensor):
        """The K x K pieces of one gaussian group given the globals: ``y_j ~ MVN(X_j b, Z_j Sigma Z_j' + sigma^2 I)``.

        With ``Sigma = L L'`` and ``A = Z_j L``, ``M = I + A'A / sigma^2`` (Woodbury and the matrix
        determinant lemma), written in the group's sufficient statistics (``X'X``, ``Z'Z``,
        ``Z'X``, ``X'y``, ``Z'y``, ``y'y``), so the cost per draw does not grow with its rows.
        ``x (N, F)`` are the group's rows ``[X, Z, y]``, ``mask (N,)`` marks the observed ones;
        in the moments layout ``x (..., 1, M)`` may hold several groups, whose leading dimensions
        broadcast against ``theta_global``'s (``(S, 1, G)`` for every draw and group).
        Returns the row count, ``L``, where Sigma or M is singular, sigma, ``|y - X b|^2``, the
        Cholesky factor of M and ``A'r``.
        """
        P, K = self.P, self.K
        theta_global, dt = theta_global.double(), torch.float64  # |y - X b|^2 from y'y: float64 against cancellation
        n, XX, ZZ, ZX, Xy, Zy, yy = self._sufficient(x, mask)
        L, bad = self._scale_tril(theta_global)
        sigma = theta_global[..., -1]
        b = theta_global[..., :P]
        # sufficient statistics of the group (fixed-size: no term below grows with its rows)
        if theta_global.dim() == 3 and theta_global.shape[1] == 1 and XX.dim() == 3:
            # every draw with every group, (S, 1, G) against (J, ...): the terms that mix a draw's
            # parameters with a group's statistics are products of an (S, .) and a (., J) matrix
            S, J = theta_global.shape[0], XX.shape[0]
            b2 = b[:, 0]
            rr = yy - 2 * (b2 @ Xy.T) + (b2[:, :, None] * b2[:, None, :]).reshape(S, -1) @ XX.reshape(J, -1).T
            Zr = Zy - (b2 @ ZX.permute(2, 0, 1).reshape(P, -1)).reshape(S, J, K)
            l2 = L[:, 0]
            # (L' ZZ L)[a, b] = sum_cd L[c, a] L[d, b] ZZ[c, d]
            ll = (l2[:, :, :, None, None] * l2[:, None, None, :, :]).permute(0, 2, 4, 1, 3).reshape(S, K * K, K * K)
            LtZZL = (ll @ ZZ.reshape(J, K * K).T).permute(0, 2, 1).reshape(S, J, K, K)
        else:  # entry by entry over the broadcast (draw, group) pairs
            rr = yy - 2 * (b * Xy).sum(-1) + small.quadratic(XX, b)  # |y - X b|^2, (...,)
            Zr = Zy - (ZX * b[..., None, :]).sum(-1)  # Z'(y - X b), (..., K)
            LtZZL = small.congruence(L, ZZ)
        s2 = sigma[..., None, None] ** 2
        # millions of 1 x 1 or 2 x 2 matrices: factored entry by entry (smallmatrix)
        chol, failed = small.cholesky(torch.eye(K, dtype=dt) + LtZZL / s2)
        Ar = (L * Zr[..., :, None]).sum(-2)[..., None]  # L' Z'(y - X b), (..., K, 1)
        return n, L, bad | failed, sigma, rr, chol, Ar

    def _sufficient(self, x: torch.Tensor, mask: torch.Tensor):
        """One gaussian group's ``N, X'X, Z'Z, Z'X, X'y, Z'y, y'y`` (float64) from its rows or its moment row."""
        P, K = self.P, self.K
        if self.group_data == "moments":  # x (..., 1, M): any number of groups
            G = self._group_gram(x, mask)
            ix, iz = self._design_aug[:P].tolist(), self._design_aug[P:].tolist()
            y = G.shape[-1] - 1
            return (G[..., 0, 0], G[..., ix, :][..., ix], G[..., iz, :][..., iz], G[..., iz, :][..., ix],
                    G[..., ix, y], G[..., iz, y], G[..., y, y])
        rows = x[mask > 0].double()
        X, Z, y = rows[:, :P], rows[:, P: P + K], rows[:, -1]
        return rows.shape[0], X.T @ X, Z.T @ Z, Z.T @ X, X.T @ y, Z.T @ y, y @ y

    def _gaussian_group_log_marginal(self, theta_global: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(y_j | globals)`` of one group (its effects integrated out), family gaussian or lognormal; ``(...,)``."""
        n, L, bad, sigma, rr, chol, Ar = self._gaussian_group(theta_global, x, mask)
        s2 = sigma**2
        quad = (rr - (Ar * small.cholesky_solve(Ar, chol)).sum((-1, -2)) / s2) / s2
        logdet = 2 * n * torch.log(sigma) + 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        lp = -0.5 * (n * math.log(2 * math.pi) + logdet + quad)
        if self._log_response:  # rows hold log y: the density of y is that of log y less sum(log y)
            lp = lp - (self._group_gram(x, mask)[..., 0, -1] if self.group_data == "moments"
                       else x[mask > 0][:, -1].double().sum())
        return torch.where(bad, torch.full_like(lp, -math.inf), lp)

    def _gaussian_sample_local_posterior(self, theta_global: torch.Tensor, x: torch.Tensor, mask: torch.Tensor,
                                         generator: torch.Generator | None = None) -> torch.Tensor:
        """One exact draw of the group's effects given the globals and its data, family gaussian; ``(..., K)``.

        ``r_j | y_j ~ N(L M^-1 A'r / sigma^2, L M^-1 L')`` in the terms of :meth:`_gaussian_group`.
        """
        _, L, bad, sigma, _, chol, Ar = self._gaussian_group(theta_global, x, mask)
        mean = small.cholesky_solve(Ar, chol) / (sigma**2)[..., None, None]  # (..., K, 1)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        u = mean + small.solve_upper_t(chol, eps)
        r = (L * u[..., None, :, 0]).sum(-1)  # L u
        return torch.where(bad[..., None], torch.full_like(r, math.nan), r)

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
        """The data columns that carry information: the design's columns less constants and copies, and the response's.

        Simulated designs resample the user's rows, so a column constant in the user's data
        (an intercept's ones) is constant in every simulation, and a group term's column
        equal to a fixed-effect one (``Days`` in ``Days + (Days | Subject)``) repeats it.

        Example:
            >>> from amortbayes.data import load_sleepstudy
            >>> from amortbayes.formula import parse_terms
            >>> m = FormulaModel(parse_terms("Reaction ~ Days + (Days | Subject)", load_sleepstudy()))
            >>> [m.data_names[i] for i in m.informative_columns()]
            ['X:Days', 'Reaction']
        """
        if self.group_data == "moments":  # the distinct design columns less constants, and the response
            rows = self._row_columns(self._rows())
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
        if self.group_data == "rows":
            return groups
        shift = np.asarray(self.row_shift)
        out = []
        for g in groups:
            rows = torch.as_tensor(self._row_columns(g.astype(np.float64)) - shift)
            out.append(row_moments(rows[None], torch.ones(1, len(g), dtype=torch.float64))[0].numpy().astype(np.float32))
        return out

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
