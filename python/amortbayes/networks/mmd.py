"""Maximum mean discrepancy of summary vectors to the standard normal, in closed form (JANA's summary criterion).

For a Gaussian kernel ``k_l(a, b) = exp(-|a - b|^2 / (2 l^2))`` on ``R^d`` and ``Z, Z' ~ N(0, I)``
the kernel's expectations against the normal are Gaussian integrals:

    E k_l(s, Z)  = (l^2 / (l^2 + 1))^(d/2) exp(-|s|^2 / (2 (l^2 + 1))),
    E k_l(Z, Z') = (l^2 / (l^2 + 2))^(d/2),

so the squared MMD of a sample ``s_1..s_B`` to ``N(0, I)``,

    MMD^2 = mean_{i != j} k(s_i, s_j) - 2 mean_i E k(s_i, Z) + E k(Z, Z'),

needs no draws from the normal (an unbiased U-statistic in the sample's pairs).  The kernel is
a sum over bandwidths ``l^2 = d c`` for ``c`` in :data:`BANDWIDTHS`, so the criterion sees
both the bulk and the tails.  Trained with it (:class:`amortbayes.amortizers.JointAmortizer`'s
``mmd_weight``), a summary network maps well-specified data sets near ``N(0, I)``.

Whether one observed data set lies within the summaries of simulated ones is asked against
a *reference* sample of held-out simulations' summaries: the squared MMD of the observed
summary (a point mass) to the reference, with the kernel scaled by the reference's median
squared distance, against the ``1 - level`` quantile of the same quantity for each reference
summary left out in turn (:func:`reference_threshold`).

References:
    Gretton et al. (2012). A kernel two-sample test. JMLR.
    Radev et al. (2023). JANA: Jointly amortized neural approximation of complex Bayesian
    models. UAI.  Schmitt et al. (2023). Detecting model misspecification in amortized
    Bayesian inference with neural networks. GCPR.
"""

from __future__ import annotations

import torch

BANDWIDTHS = (0.25, 1.0, 4.0)  # l^2 / d


def _expectations(sq_norm: torch.Tensor, d: int) -> tuple[torch.Tensor, float]:
    """Per sample ``sum_l E k_l(s, Z)`` from ``|s|^2``, and ``sum_l E k_l(Z, Z')``."""
    e_sz = torch.zeros_like(sq_norm)
    e_zz = 0.0
    for c in BANDWIDTHS:
        l2 = d * c
        e_sz = e_sz + (l2 / (l2 + 1.0)) ** (d / 2) * torch.exp(-sq_norm / (2.0 * (l2 + 1.0)))
        e_zz += (l2 / (l2 + 2.0)) ** (d / 2)
    return e_sz, e_zz


def mmd2_to_normal(s: torch.Tensor) -> torch.Tensor:
    """Unbiased squared MMD of the rows of ``s (B, d)``, ``B >= 2``, to ``N(0, I_d)`` (differentiable).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> near = mmd2_to_normal(torch.randn(2000, 4, generator=g))
        >>> far = mmd2_to_normal(torch.randn(2000, 4, generator=g) + 2.0)
        >>> abs(float(near)) < 0.01, float(far) > 0.5
        (True, True)
    """
    b, d = s.shape
    if b < 2:
        raise ValueError(f"the MMD of a sample needs at least 2 rows, got {b}")
    sq = (s * s).sum(-1)
    dist = (sq[:, None] + sq[None, :] - 2.0 * s @ s.T).clamp_min(0.0)
    k = torch.zeros_like(dist)
    for c in BANDWIDTHS:
        k = k + torch.exp(-dist / (2.0 * d * c))
    pairs = (k.sum() - k.diagonal().sum()) / (b * (b - 1))
    e_sz, e_zz = _expectations(sq, d)
    return pairs - 2.0 * e_sz.mean() + e_zz


def _kernel(a: torch.Tensor, b: torch.Tensor, l2: float) -> torch.Tensor:
    """``sum_c exp(-|a_i - b_j|^2 / (2 c l2))`` over :data:`BANDWIDTHS`, ``(A, B)``."""
    dist = ((a * a).sum(-1)[:, None] + (b * b).sum(-1)[None, :] - 2.0 * a @ b.T).clamp_min(0.0)
    return sum(torch.exp(-dist / (2.0 * c * l2)) for c in BANDWIDTHS)


def median_bandwidth(reference: torch.Tensor) -> float:
    """The median squared distance between the rows of ``reference (R, d)`` (the kernel's scale ``l^2``)."""
    dist = ((reference[:, None] - reference[None]) ** 2).sum(-1)
    off = dist[~torch.eye(len(reference), dtype=torch.bool, device=reference.device)]
    return max(float(off.median()), 1e-12)


def mmd2_to_reference(s: torch.Tensor, reference: torch.Tensor, l2: float) -> torch.Tensor:
    """Squared MMD of each single summary ``s (B, d)`` (a point mass) to the sample ``reference (R, d)``, ``(B,)``.

    ``k(s, s) - 2 mean_j k(s, r_j) + mean_{j != k} k(r_j, r_k)`` with the kernel of
    :data:`BANDWIDTHS` times ``l2`` (:func:`median_bandwidth` of the reference).

    Example:
        >>> ref = torch.randn(300, 3, generator=torch.Generator().manual_seed(0))
        >>> l2 = median_bandwidth(ref)
        >>> d = mmd2_to_reference(torch.tensor([[0.0, 0.0, 0.0], [6.0, 6.0, 6.0]]), ref, l2)
        >>> bool(d[0] < reference_threshold(ref, l2) < d[1])
        True
    """
    r = len(reference)
    k_rr = _kernel(reference, reference, l2)
    pairs = (k_rr.sum() - k_rr.diagonal().sum()) / (r * (r - 1))
    return len(BANDWIDTHS) - 2.0 * _kernel(s, reference, l2).mean(-1) + pairs


def reference_threshold(reference: torch.Tensor, l2: float, level: float = 0.01) -> float:
    """The ``1 - level`` quantile of each reference summary's squared MMD to the others (leave one out).

    A data set of the simulator's own lies beyond it with probability about ``level``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    r = len(reference)
    if r < 20:
        raise ValueError(f"a summary threshold needs at least 20 reference summaries, got {r}")
    k = _kernel(reference, reference, l2)
    k_off = k - torch.diag(k.diagonal())
    total = k_off.sum()
    row = k_off.sum(-1)
    # leave r_i out: mean k(r_i, others) and the others' own pair mean
    pairs_wo = (total - 2.0 * row) / ((r - 1) * (r - 2))
    d2 = len(BANDWIDTHS) - 2.0 * row / (r - 1) + pairs_wo
    return float(torch.quantile(d2.double(), 1.0 - level))


__all__ = ["BANDWIDTHS", "median_bandwidth", "mmd2_to_normal", "mmd2_to_reference", "reference_threshold"]


def mmd2_samples(a: torch.Tensor, b: torch.Tensor, l2: float) -> torch.Tensor:
    """Unbiased squared MMD between the samples ``a (..., A, d)`` and ``b (..., B, d)`` (leading dims batched), ``(...)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> same = mmd2_samples(torch.randn(400, 2, generator=g), torch.randn(400, 2, generator=g), 2.0)
        >>> far = mmd2_samples(torch.randn(400, 2, generator=g), 1 + torch.randn(400, 2, generator=g), 2.0)
        >>> bool(abs(same) < 0.02 < far)
        True
    """
    def k(u, v):
        dist = torch.cdist(u, v).pow(2)
        return sum(torch.exp(-dist / (2.0 * c * l2)) for c in BANDWIDTHS)

    na, nb = a.shape[-2], b.shape[-2]
    kaa, kbb = k(a, a), k(b, b)
    within_a = (kaa.sum((-1, -2)) - kaa.diagonal(dim1=-2, dim2=-1).sum(-1)) / (na * (na - 1))
    within_b = (kbb.sum((-1, -2)) - kbb.diagonal(dim1=-2, dim2=-1).sum(-1)) / (nb * (nb - 1))
    return within_a + within_b - 2.0 * k(a, b).mean((-1, -2))
