"""Groups as moment sums: a data layout whose size does not grow with a group's rows.

A group of ``N_j`` rows of ``F`` columns ``c`` can be held as one row of *moment sums*

    [N_j, sum_i c_i1, ..., sum_i c_iF, sum_i c_i1 c_i1, sum_i c_i1 c_i2, ..., sum_i c_iF c_iF]

(the count, the column sums and the sums of products ``k <= l`` in the order of
:func:`~amortbayes.networks.summary.pairwise_products`): ``1 + F + F (F + 1) / 2`` numbers
whatever ``N_j``.  For a Gaussian linear model these are the sufficient statistics of a
group (``X'X``, ``X'y``, ``y'y``, ``N``), so a model whose likelihood needs nothing else can
simulate them directly and never materialize rows (the gaussian formula models), and a
summary network that reads only moments (:class:`~amortbayes.networks.summary.DeepSet` with
``row_network=False``) sees the same numbers from rows or from sums.  A model declares the
layout with ``group_data = "moments"`` and names the row columns in ``row_names``; its
``data_names`` are then :func:`moment_names` of them and each group is one row of ``x``.

Example:
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 5.0], [0.0, 0.0]]]])  # one data set, one group of 2 rows (+1 padded)
    >>> m = row_moments(x, torch.tensor([[[1.0, 1.0, 0.0]]]))
    >>> m[0, 0, 0].tolist()  # N, sums of the 2 columns, sums of c1 c1, c1 c2, c2 c2
    [2.0, 4.0, 7.0, 10.0, 17.0, 29.0]
    >>> moment_names(("x", "y"))
    ('n', 'sum(x)', 'sum(y)', 'sum(x*x)', 'sum(x*y)', 'sum(y*y)')
"""

from __future__ import annotations

import math

import torch

GROUP_DATA = ("rows", "moments")


def n_moments(features: int) -> int:
    """Number of moment sums of ``features`` row columns: ``1 + F + F (F + 1) / 2``."""
    return 1 + features + features * (features + 1) // 2


def n_row_columns(moments: int) -> int:
    """The ``F`` of :func:`n_moments` (inverse); raises ``ValueError`` if ``moments`` is no such size."""
    f = 0
    while n_moments(f) < moments:
        f += 1
    if n_moments(f) != moments:
        raise ValueError(f"{moments} columns are not the moment sums of any number of row columns")
    return f


def moment_names(row_names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Column names of the moment layout of rows with columns ``row_names``."""
    f = len(row_names)
    names = ["n"] + [f"sum({c})" for c in row_names]
    names += [f"sum({row_names[k]}*{row_names[m]})" for k in range(f) for m in range(k, f)]
    return tuple(names)


def row_moments(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Moment rows ``(..., 1, n_moments(F))`` of padded groups ``x (..., N, F)`` with ``mask (..., N)``.

    Sums in float64 (sums of squares of thousands of rows lose digits in float32); the
    result has ``x``'s dtype unless that is float64 already.
    """
    xd, m = x.double(), mask.double()[..., None]
    f = x.shape[-1]
    k, l = torch.triu_indices(f, f, device=x.device)
    xm = xd * m
    parts = [m.sum(-2), xm.sum(-2), (xm[..., k] * xd[..., l]).sum(-2)]
    return torch.cat(parts, -1)[..., None, :].to(x.dtype)


def split_moments(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(N (...), sums (..., F), products (..., F (F + 1) / 2))`` of moment rows ``m (..., n_moments(F))``."""
    f = n_row_columns(m.shape[-1])
    return m[..., 0], m[..., 1 : 1 + f], m[..., 1 + f :]


def gram(products: torch.Tensor, f: int) -> torch.Tensor:
    """The symmetric ``(..., F, F)`` matrix of sums of products from their ``k <= l`` entries."""
    k, l = torch.triu_indices(f, f, device=products.device)
    out = torch.zeros(*products.shape[:-1], f, f, dtype=products.dtype, device=products.device)
    out[..., k, l] = products
    out[..., l, k] = products
    return out


def moment_means(m: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per group ``N``, means ``E[c]`` and second moments ``E[c_k c_l]`` of moment rows ``m (..., 1, M)``.

    ``mask (..., 1)`` marks real groups; padded ones get ``N = 0`` and zero moments.
    """
    n, s1, s2 = split_moments(m[..., 0, :].double() * mask.double())
    d = n.clamp_min(1.0)[..., None]
    return n, s1 / d, s2 / d


def standardized_moments(mean: torch.Tensor, second: torch.Tensor, loc: torch.Tensor,
                         scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The moments of ``z = (c - loc) / scale`` from those of ``c``, exactly.

    ``E[z_k] = (E[c_k] - a_k) / s_k`` and ``E[z_k z_l] = (E[c_k c_l] - a_l E[c_k] - a_k E[c_l] + a_k a_l) / (s_k s_l)``.
    """
    f = mean.shape[-1]
    k, l = torch.triu_indices(f, f, device=mean.device)
    a, s = loc.to(mean), scale.to(mean)
    zm = (mean - a) / s
    zs = (second - a[l] * mean[..., k] - a[k] * mean[..., l] + a[k] * a[l]) / (s[k] * s[l])
    return zm, zs


def augmented_gram(m: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    """The float64 Gram matrix ``(..., 1 + F, 1 + F)`` of the columns ``[1, c]`` from moment rows ``m (..., M)``.

    Entry ``(0, 0)`` is ``N``, row 0 holds the sums, the rest the sums of products.
    ``shift (F,)``: the moments are of ``c - shift`` (a model stores them so, because float32
    sums of squares of columns far from zero lose the spread to rounding); the result is
    the Gram matrix of ``[1, c]`` itself, undone in float64.

    Example:
        >>> rows = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
        >>> shift = torch.tensor([2.0, 3.0])
        >>> m = row_moments((rows - shift)[None], torch.ones(1, 2))[0, 0]
        >>> a = torch.cat([torch.ones(2, 1), rows], 1).double()
        >>> torch.allclose(augmented_gram(m, shift), a.T @ a)
        True
    """
    n, s1, s2 = split_moments(m.double())
    f = s1.shape[-1]
    out = torch.zeros(*m.shape[:-1], f + 1, f + 1, dtype=torch.float64, device=m.device)
    out[..., 0, 0] = n
    out[..., 0, 1:] = s1
    out[..., 1:, 0] = s1
    out[..., 1:, 1:] = gram(s2, f)
    if shift is None:
        return out
    # [1, c] = [1, c - a] T with T = [[1, a'], [0, I]]: G = T' G_shifted T
    t = torch.eye(f + 1, dtype=torch.float64, device=m.device)
    t[0, 1:] = shift.double().to(m.device)
    return t.T @ out @ t


def sample_chi2(df: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Chi-squared draws with ``df`` (>= 0, any shape; 0 gives 0) degrees of freedom, float64.

    Marsaglia & Tsang's (2000) gamma sampler, vectorized with a few rejection rounds (it
    accepts 95-99 % of proposals), from ``generator``'s normal and uniform streams; shapes
    below 1 use ``Gamma(a) = Gamma(a + 1) U^(1 / a)``.

    Example:
        >>> x = sample_chi2(torch.full((20000,), 7.0), torch.Generator().manual_seed(0))
        >>> abs(x.mean().item() - 7.0) < 0.1, abs(x.var().item() - 14.0) < 0.6
        (True, True)
    """
    shape = df.double() / 2
    a = torch.where(shape < 1, shape + 1, shape).clamp_min(1.0)
    d = a - 1.0 / 3
    c = 1.0 / torch.sqrt(9 * d)
    out = torch.full_like(a, math.nan)
    todo = torch.ones_like(a, dtype=torch.bool)
    for _ in range(64):
        z = torch.randn(a.shape, generator=generator, dtype=torch.float64)
        u = torch.rand(a.shape, generator=generator, dtype=torch.float64)
        v = (1 + c * z) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-300)) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        take = todo & ok
        out = torch.where(take, d * v, out)
        todo = todo & ~ok
        if not bool(todo.any()):
            break
    small = shape < 1
    if bool(small.any()):
        u = torch.rand(a.shape, generator=generator, dtype=torch.float64)
        out = torch.where(small, out * u.clamp_min(1e-300) ** (1.0 / shape.clamp_min(1e-12)), out)
    return torch.where(df > 0, 2 * out, torch.zeros_like(out))


def gram_to_moments(g: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    """Moment rows ``(..., M)`` of ``c - shift`` from the Gram matrix ``g (..., 1 + F, 1 + F)`` of ``[1, c]``.

    The inverse of :func:`augmented_gram`.

    Example:
        >>> m = torch.tensor([2.0, 4.0, 7.0, 10.0, 17.0, 29.0])
        >>> torch.allclose(gram_to_moments(augmented_gram(m, torch.tensor([1.0, 2.0])), torch.tensor([1.0, 2.0])), m.double())
        True
    """
    f = g.shape[-1] - 1
    g = g.double()
    if shift is not None:
        t = torch.eye(f + 1, dtype=torch.float64, device=g.device)
        t[0, 1:] = -shift.double().to(g.device)
        g = t.T @ g @ t
    k, l = torch.triu_indices(f, f, device=g.device)
    return torch.cat([g[..., :1, 0], g[..., 0, 1:], g[..., 1:, 1:][..., k, l]], -1)
