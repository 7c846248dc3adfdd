"""Gaussian formula models in closed form: a group's exact marginal and conditional, and groups as moment sums.

For ``y_j ~ N(X_j b + Z_j r_j, sigma^2 I)`` with ``r_j ~ N(0, Sigma)`` (lognormal: the same in
``log y``) a group's likelihood depends on its rows only through ``N, X'X, Z'Z, Z'X, X'y, Z'y,
y'y``.  :func:`group_log_marginal` integrates ``r_j`` out exactly and :func:`sample_local_posterior`
draws it from its exact conditional (Woodbury and the matrix determinant lemma in those
statistics), for one group of rows or for any number of groups given as moment rows.
:class:`MomentsLayout` holds each group as the moment sums of its distinct design columns and
its response (:mod:`amortbayes.moments`): it simulates them exactly without rows and evaluates
the likelihood from them, so the cost of a step does not grow with the rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from amortbayes.formula import smallmatrix as small
from amortbayes.moments import augmented_gram, gram_to_moments, moment_names, row_moments, sample_chi2


class MomentsLayout:
    """A gaussian formula model's groups as moment rows of ``[distinct design columns, response]``.

    Design columns that are the same term in ``X`` and ``Z`` (``Days`` in ``Days + (Days | g)``)
    are one row column, an intercept's ones are the count; the moments are of the columns less
    their means in the user's data (:attr:`shift`), so float32 keeps their spread.  Each user
    group's design Gram matrix, its square root and rank are kept for the simulator.

    Attributes:
        row_names: the row columns (design columns, then the response as the rows hold it).
        shift: their means in the user's data.
        design_aug: for each column of ``[X, Z]``, its column in ``[1, row columns]``.
        design_cols: for each design row column, its column in ``[X, Z]``.
    """

    def __init__(self, model: Any):
        self.model = model
        t = model.terms
        names = list(t.fixed_names) + list(t.group_names)
        design = model._rows()[:, : model.P + model.K]
        cols: list[int] = []  # columns of [X, Z] that are row columns
        aug: list[int] = []  # column of [X, Z] -> column of [1, row columns]
        for k, name in enumerate(names):
            twin = [i for i, c in enumerate(cols) if names[c] == name and np.array_equal(design[:, k], design[:, c])]
            if name == "Intercept" and np.all(design[:, k] == 1.0):
                aug.append(0)
            elif twin:
                aug.append(1 + twin[0])
            else:
                cols.append(k)
                aug.append(len(cols))
        self.design_aug = torch.tensor(aug, dtype=torch.long)
        self.design_cols = cols
        self.row_names = tuple(names[c] for c in cols) + (model.data_names[-1],)
        self.y_aug = len(cols) + 1  # the response's column in [1, design columns, response]
        self.shift = torch.tensor(self.row_columns(model._rows()).mean(0), dtype=torch.float64)
        self.data_names = moment_names(self.row_names)
        gram_ = torch.stack([self._design_gram(self.row_columns(g)) for g in model.observed_rows()])
        lam, vec = torch.linalg.eigh(gram_)
        tol = lam.amax(-1, keepdim=True).clamp_min(1e-300) * gram_.shape[-1] * 1e-12
        positive = lam > tol
        self.user_gram = gram_
        self.user_root = vec * torch.where(positive, lam, torch.zeros_like(lam)).sqrt()[..., None, :]  # V sqrt(lambda)
        self.user_positive = positive
        self.user_rank = positive.sum(-1)

    @staticmethod
    def _design_gram(rows: np.ndarray) -> torch.Tensor:
        d = torch.as_tensor(np.column_stack([np.ones(len(rows)), rows[:, :-1]]), dtype=torch.float64)
        return d.T @ d

    def row_columns(self, rows: np.ndarray) -> np.ndarray:
        """The row columns (distinct design columns, response) of rows ``[X, Z, y]``."""
        return np.column_stack([rows[:, self.design_cols], rows[:, -1]])

    def moment_rows(self, groups: list[np.ndarray]) -> list[np.ndarray]:
        """One ``(1, M)`` float32 row of moment sums per group of rows (in float64 from the rows less the shift)."""
        shift = self.shift.numpy()
        out = []
        for g in groups:
            rows = torch.as_tensor(self.row_columns(g.astype(np.float64)) - shift)
            out.append(row_moments(rows[None], torch.ones(1, len(g), dtype=torch.float64))[0].numpy().astype(np.float32))
        return out

    def coefficients(self, theta_global: torch.Tensor, theta_local: torch.Tensor) -> torch.Tensor:
        """Each group's coefficients on the columns ``[1, design columns]``, ``(..., J, 1 + D)``."""
        P = self.model.P
        b = theta_global[..., None, :P].expand(*theta_local.shape[:-1], P)
        both = torch.cat([b, theta_local.to(b.dtype)], -1)
        out = torch.zeros(*both.shape[:-1], self.y_aug, dtype=both.dtype, device=both.device)
        return out.index_add(-1, self.design_aug.to(both.device), both)

    def simulate(self, theta_global, theta_local, user, generator) -> torch.Tensor:
        """Moment rows ``(B, J, 1, M)`` of groups that take the designs of the user groups ``user (B, J)``.

        With ``D`` the group's columns ``[1, design]`` and ``y = D beta + sigma e``:
        ``D'y = D'D beta + sigma V sqrt(lambda) z`` (``D'D = V lambda V'``, so ``D'e ~ N(0, D'D)``),
        ``y'y = beta'D'D beta + 2 sigma beta'V sqrt(lambda) z + sigma^2 (|z_+|^2 + chi2_{N - rank D})``:
        ``|z_+|^2`` is the noise's squared length in the span of ``D``, the chi-squared its rest.
        Exact in distribution, in float64, without rows.
        """
        tg, tl = theta_global.double(), theta_local.double()
        beta = self.coefficients(tg, tl)  # (B, J, a)
        gram_, root, positive = self.user_gram[user], self.user_root[user], self.user_positive[user]
        n = gram_[..., 0, 0]
        sigma = self.model._dpars(tg)["sigma"][..., 0]  # (B, 1)
        z = torch.randn(beta.shape, generator=generator, dtype=torch.float64) * positive
        noise = (root @ z[..., None])[..., 0]  # D'e
        mean = (gram_ @ beta[..., None])[..., 0]
        dy = mean + sigma[..., None] * noise
        rest = sample_chi2(n - self.user_rank[user], generator)
        yy = (beta * mean).sum(-1) + 2 * sigma * (beta * noise).sum(-1) + sigma**2 * ((z * z).sum(-1) + rest)
        a = self.y_aug
        full = torch.zeros(*beta.shape[:-1], a + 1, a + 1, dtype=torch.float64)
        full[..., :a, :a] = gram_
        full[..., :a, a] = dy
        full[..., a, :a] = dy
        full[..., a, a] = yy
        return gram_to_moments(full, self.shift)[..., None, :]

    def group_gram(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Float64 Gram matrix of ``[1, design columns, response]`` per group of moment rows ``x (..., 1, M)``."""
        return augmented_gram(x[..., 0, :].double() * mask[..., 0, None].double(), self.shift)

    def log_likelihood(self, theta_global, theta_local, x, mask) -> torch.Tensor:
        """``log p(x_j | theta)`` per group from its moments, shape ``x.shape[:-2]``.

        With ``g = [beta_j, -1]`` on ``[1, design, y]`` and their Gram matrix ``G``:
        ``-N/2 log(2 pi sigma^2) - g'G g / (2 sigma^2)`` (less ``sum log y`` for lognormal).
        """
        tg = theta_global.double()
        G = self.group_gram(x, mask)  # (..., J, a + 1, a + 1)
        beta = self.coefficients(tg, theta_local.double())
        g = torch.cat([beta, -torch.ones_like(beta[..., :1])], -1)
        ss = (g[..., None, :] @ G @ g[..., :, None])[..., 0, 0]
        sigma = self.model._dpars(tg)["sigma"][..., 0]  # (..., 1): broadcasts over the groups
        ll = -0.5 * G[..., 0, 0] * torch.log(2 * math.pi * sigma**2) - 0.5 * ss / sigma**2
        if self.model._log_response:
            ll = ll - G[..., 0, -1]
        return ll * (mask[..., 0] > 0)

    def sufficient(self, x: torch.Tensor, mask: torch.Tensor):
        """``N, X'X, Z'Z, Z'X, X'y, Z'y, y'y`` (float64) of any number of groups of moment rows ``x (..., 1, M)``."""
        P = self.model.P
        G = self.group_gram(x, mask)
        ix, iz = self.design_aug[:P].tolist(), self.design_aug[P:].tolist()
        y = G.shape[-1] - 1
        return (G[..., 0, 0], G[..., ix, :][..., ix], G[..., iz, :][..., iz], G[..., iz, :][..., ix],
                G[..., ix, y], G[..., iz, y], G[..., y, y])


def sufficient(model: Any, x: torch.Tensor, mask: torch.Tensor):
    """One gaussian group's ``N, X'X, Z'Z, Z'X, X'y, Z'y, y'y`` (float64) from its rows, or its (their) moment rows."""
    if model.layout is not None:
        return model.layout.sufficient(x, mask)
    P, K = model.P, model.K
    rows = x[mask > 0].double()
    X, Z, y = rows[:, :P], rows[:, P: P + K], rows[:, -1]
    return rows.shape[0], X.T @ X, Z.T @ Z, Z.T @ X, X.T @ y, Z.T @ y, y @ y


def gaussian_group(model: Any, theta_global: torch.Tensor, x: torch.Tensor, mask: torch.Tensor):
    """The K x K pieces of a gaussian group given the globals: ``y_j ~ MVN(X_j b, Z_j Sigma Z_j' + sigma^2 I)``.

    With ``Sigma = L L'`` and ``A = Z_j L``, ``M = I + A'A / sigma^2`` (Woodbury and the matrix
    determinant lemma), written in the group's sufficient statistics (``X'X``, ``Z'Z``,
    ``Z'X``, ``X'y``, ``Z'y``, ``y'y``), so the cost per draw does not grow with its rows.
    ``x (N, F)`` are the group's rows ``[X, Z, y]``, ``mask (N,)`` marks the observed ones;
    in the moments layout ``x (..., 1, M)`` may hold several groups, whose leading dimensions
    broadcast against ``theta_global``'s (``(S, 1, G)`` for every draw and group).
    Returns the row count, ``L``, where Sigma or M is singular, sigma, ``|y - X b|^2``, the
    Cholesky factor of M and ``A'r``.
    """
    P, K = model.P, model.K
    theta_global, dt = theta_global.double(), torch.float64  # |y - X b|^2 from y'y: float64 against cancellation
    n, XX, ZZ, ZX, Xy, Zy, yy = sufficient(model, x, mask)
    L, bad = model._scale_tril(theta_global)
    sigma = theta_global[..., -1]
    b = theta_global[..., :P]
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
    Ar = small.tril_t_times(L, Zr)[..., None]  # L' Z'(y - X b), (..., K, 1)
    return n, L, bad | failed, sigma, rr, chol, Ar


def group_log_marginal(model: Any, theta_global: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Exact ``log p(y_j | globals)`` of a group (its effects integrated out), family gaussian or lognormal; ``(...,)``."""
    n, L, bad, sigma, rr, chol, Ar = gaussian_group(model, theta_global, x, mask)
    s2 = sigma**2
    quad = (rr - (Ar * small.cholesky_solve(Ar, chol)).sum((-1, -2)) / s2) / s2
    logdet = 2 * n * torch.log(sigma) + 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    lp = -0.5 * (n * math.log(2 * math.pi) + logdet + quad)
    if model._log_response:  # rows hold log y: the density of y is that of log y less sum(log y)
        lp = lp - (model.layout.group_gram(x, mask)[..., 0, -1] if model.layout is not None
                   else x[mask > 0][:, -1].double().sum())
    return torch.where(bad, torch.full_like(lp, -math.inf), lp)


def sample_local_posterior(model: Any, theta_global: torch.Tensor, x: torch.Tensor, mask: torch.Tensor,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """One exact draw of a group's effects given the globals and its data, family gaussian; ``(..., K)``.

    ``r_j | y_j ~ N(L M^-1 A'r / sigma^2, L M^-1 L')`` in the terms of :func:`gaussian_group`.
    """
    _, L, bad, sigma, _, chol, Ar = gaussian_group(model, theta_global, x, mask)
    # u = M^-1 A'r / sigma^2 + C'^-1 eps = C'^-1 (C^-1 A'r / sigma^2 + eps) for M = C C': one back substitution
    eps = torch.randn(Ar.shape, generator=generator, dtype=torch.float32).to(Ar.dtype)  # float32 draws: half the time
    u = small.solve_upper_t(chol, small.solve_lower(chol, Ar) / (sigma**2)[..., None, None] + eps)
    r = small.tril_times(L, u[..., 0])  # L u
    return torch.where(bad[..., None], torch.full_like(r, math.nan), r)
