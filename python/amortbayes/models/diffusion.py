"""Wiener diffusion decision model: a fast vectorized first-passage simulator and closed-form checks.

Model (Stan's ``wiener_lpdf`` parameterization; Habermann et al. 2024, eq. 22).  Evidence
``X_s`` starts at ``z = beta * a`` and follows a Brownian motion with drift ``v`` and unit
diffusion coefficient, ``dX_s = v ds + dW_s``, until it first leaves ``(0, a)`` at time
``T``.  One trial is

    rt = tau + T,    choice = 1 if X_T = a (upper boundary) else 0 (lower boundary),

with drift ``v`` (real), boundary separation ``a > 0``, relative starting point
``beta`` in ``(0, 1)`` and non-decision time ``tau >= 0``.

**Simulator: exact walk on symmetric intervals.**  From a point ``x`` in ``(0, a)`` let
``r = min(x, a - x)``, so ``(x - r, x + r)`` touches the nearest boundary.  For Brownian
motion with drift ``v`` started at the centre of ``(x - r, x + r)`` the exit time ``S`` and
the exit side are *independent* (Girsanov: the likelihood ratio to the driftless motion is
``exp(v (X_S - x) - v^2 S / 2)`` and ``|X_S - x| = r`` on both sides), with

    P(exit at x + r) = 1 / (1 + exp(-2 v r)),
    E exp(-lambda S) = cosh(v r) / cosh(r sqrt(2 lambda + v^2)),

so ``S = r^2 J`` where ``J ~ J*(1, |v| r)`` has density
``cosh(z) exp(-z^2 t / 2) f_0(t)`` and ``f_0`` is the density of the exit time of standard
Brownian motion from ``(-1, 1)`` (Laplace transform ``1 / cosh(sqrt(2 lambda))``).  Each
step draws ``(S, side)`` exactly; if the side is a real boundary the trial ends, otherwise
the walk restarts at ``x +- r`` (``2x`` or ``2x - a``, exact in floating point).  Every
step ends the trial with probability about one half or more, so a trial needs about two
or three steps on average, with a geometric tail, and the active trials are compacted after
every step.  ``J*(1, z)`` is drawn with Devroye's exact alternating-series rejection sampler
in the tilted form of Polson, Scott & Windle (2013): the proposal is a mixture of an
exponential (``t > 0.64``) and a truncated inverse Gaussian (``t <= 0.64``), the acceptance
rate is above 0.999 for every ``z``, and the alternating series

    f_0(t) = sum_n (-1)^n a_n(t),
    a_n(t) = pi (n + 1/2) exp(-(n + 1/2)^2 pi^2 t / 2)                    (t > 0.64),
    a_n(t) = pi (n + 1/2) (2 / (pi t))^{3/2} exp(-2 (n + 1/2)^2 / t)      (t <= 0.64),

decides acceptance after one or two terms.  The method has no discretization and no
truncation error: draws are exact up to floating-point rounding.  All arithmetic is in
float64; one CPU thread simulates a million trials in about 0.4-1 s (CPU time, measured
on a shared 2-core machine; the slowest cases combine strong drift and a start far from
the midpoint).  Everything is tensor code, so it runs on CUDA as well.

**Closed forms.**  With ``z = beta a`` (Cox & Miller 1965, ch. 5; Grasman, Wagenmakers &
van der Maas 2009):

    P(upper) = (1 - exp(-2 v z)) / (1 - exp(-2 v a))                  (= beta if v = 0),
    E[T | upper] = (g(v a) - g(v z)) / v^2,     g(y) = y coth(y) - 1,
    E[T | lower] = (g(v a) - g(v (a - z))) / v^2,
    E[T] = (a P(upper) - z) / v                                       (= z (a - z) if v = 0).

The conditional times follow from the Doob h-transform (the motion conditioned on the upper
exit has drift ``v coth(v x)``); they are even in ``v`` and tend to ``(a^2 - z^2) / 3`` and
``(a^2 - (a - z)^2) / 3`` as ``v -> 0``.  ``E[T]`` is computed as
``P(upper) E[T | upper] + P(lower) E[T | lower]``, which is free of the cancellation in
``(a P(upper) - z) / v`` for small ``v``.

**Density.**  The first-passage density at the lower boundary is (Navarro & Fuss 2009)

    f(t | v, a, w) = a^{-2} exp(-v a w - v^2 t / 2) f_0(t / a^2 | w),
    f_0(u | w) = (2 pi u^3)^{-1/2} sum_{k in Z} (w + 2k) exp(-(w + 2k)^2 / (2u))     (small u),
               = pi sum_{k >= 1} k exp(-k^2 pi^2 u / 2) sin(k pi w)                  (large u),

and at the upper boundary ``f(t | -v, a, 1 - w)``.  Both series are summed in log space
with a fixed number of terms (small-time series for ``u < 1`` with ``|k| <= 5``,
large-time series for ``u >= 1`` with ``k <= 3``), each series evaluated only where it is
used; the omitted terms are below ``1e-20`` relative, so the log density is accurate to
rounding error in the bulk and the tails.  The
small-time series is summed in pairs of terms written with ``expm1``, so that it stays
accurate where the density vanishes linearly in ``w`` or ``1 - w``.

References:
    Cox & Miller (1965). The Theory of Stochastic Processes. Methuen (ch. 5).
    Navarro & Fuss (2009). Fast and accurate calculations for first-passage times in
    Wiener diffusion models. Journal of Mathematical Psychology 53, 222-230.
    Grasman, Wagenmakers & van der Maas (2009). On the mean and variance of response times
    under the diffusion model with an application to parameter estimation. Journal of
    Mathematical Psychology 53, 55-68.
    Devroye (2009). On exact simulation algorithms for some distributions related to
    Jacobi theta functions. Statistics & Probability Letters 79, 2251-2259.
    Polson, Scott & Windle (2013). Bayesian inference for logistic models using
    Polya-Gamma latent variables. JASA 108, 1339-1349.
    Borodin & Salminen (2002). Handbook of Brownian Motion: Facts and Formulae (exit
    times of an interval with drift).
    Habermann, Schmitt, Kuehmichel, Bulling, Radev & Buerkner (2024). Amortized Bayesian
    multilevel models. arXiv:2408.13230.

Example:
    >>> import torch
    >>> from amortbayes.models.diffusion import simulate_diffusion, upper_probability
    >>> gen = torch.Generator().manual_seed(1)
    >>> v, a, beta, tau = (torch.full((2, 3, 1000), x) for x in (1.0, 1.5, 0.5, 0.3))
    >>> rt, choice = simulate_diffusion(v, a, beta, tau, generator=gen)
    >>> rt.shape, bool((rt > 0.3).all())
    (torch.Size([2, 3, 1000]), True)
    >>> round(float(upper_probability(1.0, 1.5, 0.5)), 4)
    0.8176
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "conditional_mean_decision_time",
    "mean_decision_time",
    "simulate_diffusion",
    "upper_probability",
    "wiener_log_density",
]

_METHODS = ("auto", "intervals")
_T_SPLIT = 0.64  # Devroye's split point of the J* proposal
_MAX_STEPS = 100_000  # walk steps; a trial needs more with probability far below 1e-300
_SMALL_TERMS = 5  # pairs (k, -k) of the small-time series; the first omitted one is below 1e-22 relative at u < 1
_LARGE_TERMS = 3  # terms of the large-time series; the first omitted one is below 1e-30 relative at u >= 1
_U_SWITCH = 1.0  # small-time series below, large-time series at or above (in t / a^2)

TensorLike = Tensor | float


# ---------------------------------------------------------------------------------------
# argument handling
# ---------------------------------------------------------------------------------------


def _broadcast(expand: bool = True, **named: TensorLike) -> tuple[list[Tensor], torch.dtype]:
    """Broadcast the named arguments to float64 tensors; return them and the output dtype.

    Python numbers are read in float64 and do not decide the output dtype, which is the
    promoted floating dtype of the tensor (or array) arguments, else torch's default dtype.
    ``expand=False`` only checks that the shapes broadcast and returns the tensors as they
    are (checks of per-trial parameters then run once per value, not once per trial).
    """
    tensors = [
        torch.as_tensor(value, dtype=torch.float64) if isinstance(value, (int, float)) else torch.as_tensor(value)
        for value in named.values()
    ]
    device = next((t.device for t in tensors if t.device.type != "cpu"), tensors[0].device)
    dtype = torch.get_default_dtype()
    floats = [
        t.dtype for t, value in zip(tensors, named.values())
        if t.dtype.is_floating_point and not isinstance(value, (int, float))
    ]
    if floats:
        dtype = floats[0]
        for other in floats[1:]:
            dtype = torch.promote_types(dtype, other)
    for name, t in zip(named, tensors):
        if t.dtype.is_complex:
            raise ValueError(f"{name} must be real, got dtype {t.dtype}")
    tensors = [t.to(device=device, dtype=torch.float64) for t in tensors]
    try:
        shape = torch.broadcast_shapes(*(t.shape for t in tensors))
        if expand:
            tensors = [t.expand(shape) for t in tensors]
    except RuntimeError as err:
        shapes = ", ".join(f"{n}: {tuple(t.shape)}" for n, t in zip(named, tensors))
        raise ValueError(f"arguments do not broadcast ({shapes})") from err
    return tensors, dtype


def _check_finite(**named: Tensor) -> None:
    for name, t in named.items():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} must be finite, got non-finite values (nan or inf)")


def _check_parameters(v: Tensor, a: Tensor, beta: Tensor, tau: Tensor | None = None) -> None:
    """Raise ``ValueError`` unless every trial has finite v, a > 0, 0 < beta < 1, tau >= 0."""
    named = {"v": v, "a": a, "beta": beta} if tau is None else {"v": v, "a": a, "beta": beta, "tau": tau}
    _check_finite(**named)
    if bool((a <= 0).any()):
        raise ValueError(f"boundary separation a must be > 0, got min(a) = {float(a.min()):g}")
    if bool(((beta <= 0) | (beta >= 1)).any()):
        raise ValueError(
            "relative starting point beta must lie strictly inside (0, 1), got values in "
            f"[{float(beta.min()):g}, {float(beta.max()):g}]"
        )
    if tau is not None and bool((tau < 0).any()):
        raise ValueError(f"non-decision time tau must be >= 0, got min(tau) = {float(tau.min()):g}")


# ---------------------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------------------


def _upper_probability(v: Tensor, a: Tensor, beta: Tensor) -> Tensor:
    """P(upper) in float64 without overflow: expm1 ratios, the sign of ``2 v a`` folded out."""
    c = (2.0 * v * a).abs()
    w = torch.where(v >= 0, beta, 1.0 - beta)  # P(upper | v < 0) = P(lower | -v, 1 - beta)
    c_safe = torch.where(c > 0, c, torch.ones_like(c))
    # (1 - e^{-c w}) / (1 - e^{-c}) for c > 0
    p = torch.expm1(-c_safe * w) / torch.expm1(-c_safe)
    p = torch.where(c > 0, p, w)
    return torch.where(v >= 0, p, 1.0 - p)


def _g(y: Tensor) -> Tensor:
    """``y coth(y) - 1``, accurate for small ``|y|`` (even series) and large ``|y|``."""
    y2 = y * y
    series = y2 * (1 / 3 + y2 * (-1 / 45 + y2 * (2 / 945 + y2 * (-1 / 4725 + y2 * (2 / 93555)))))
    small = y.abs() < 0.1
    y_safe = torch.where(small, torch.ones_like(y), y)
    return torch.where(small, series, y_safe / torch.tanh(y_safe) - 1.0)


def _conditional_means(v: Tensor, a: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    z = beta * a
    small = (v * a).abs() < 1e-4
    v_safe = torch.where(small, torch.ones_like(v), v)
    va = v_safe * a
    upper = (_g(va) - _g(v_safe * z)) / v_safe**2
    lower = (_g(va) - _g(v_safe * (a - z))) / v_safe**2
    # second-order expansion in v: E[T | upper] = (a^2 - z^2)/3 - v^2 (a^4 - z^4)/45 + O(v^4)
    v2 = v * v
    upper0 = (a * a - z * z) / 3 - v2 * (a**4 - z**4) / 45
    lower0 = (a * a - (a - z) ** 2) / 3 - v2 * (a**4 - (a - z) ** 4) / 45
    return torch.where(small, upper0, upper), torch.where(small, lower0, lower)


def upper_probability(v: TensorLike, a: TensorLike, beta: TensorLike) -> Tensor:
    """Probability that the diffusion ends at the upper boundary ``a``.

    ``P = (1 - exp(-2 v beta a)) / (1 - exp(-2 v a))``, and ``beta`` when ``v = 0``
    (Cox & Miller 1965).  Computed without overflow for any finite ``v a``.

    Example:
        >>> round(float(upper_probability(0.0, 2.0, 0.3)), 6)
        0.3
    """
    (v_, a_, beta_), dtype = _broadcast(v=v, a=a, beta=beta)
    _check_parameters(v_, a_, beta_)
    return _upper_probability(v_, a_, beta_).to(dtype)


def conditional_mean_decision_time(v: TensorLike, a: TensorLike, beta: TensorLike) -> tuple[Tensor, Tensor]:
    """Mean decision time given the boundary: ``(E[T | upper], E[T | lower])``.

    ``E[T | upper] = (g(v a) - g(v beta a)) / v^2`` with ``g(y) = y coth(y) - 1`` and
    ``E[T | lower]`` the same with ``beta -> 1 - beta``; both are even in ``v`` and tend to
    ``(a^2 - z^2) / 3`` and ``(a^2 - (a - z)^2) / 3`` (``z = beta a``) as ``v -> 0``
    (Grasman, Wagenmakers & van der Maas 2009).

    Example:
        >>> up, low = conditional_mean_decision_time(0.0, 1.0, 0.5)
        >>> round(float(up), 6), round(float(low), 6)
        (0.25, 0.25)
    """
    (v_, a_, beta_), dtype = _broadcast(v=v, a=a, beta=beta)
    _check_parameters(v_, a_, beta_)
    upper, lower = _conditional_means(v_, a_, beta_)
    return upper.to(dtype), lower.to(dtype)


def mean_decision_time(v: TensorLike, a: TensorLike, beta: TensorLike) -> Tensor:
    """Unconditional mean first-passage (decision) time ``E[T]``, excluding ``tau``.

    By optional stopping ``E[X_T] = z + v E[T]`` and ``E[X_T] = a P(upper)``, so
    ``E[T] = (a P(upper) - z) / v`` with ``z = beta a``, and ``z (a - z)`` for ``v = 0``.
    Evaluated as ``P(upper) E[T | upper] + P(lower) E[T | lower]`` for accuracy at small
    ``v`` (Grasman, Wagenmakers & van der Maas 2009).

    Example:
        >>> round(float(mean_decision_time(0.0, 1.0, 0.5)), 6)
        0.25
    """
    (v_, a_, beta_), dtype = _broadcast(v=v, a=a, beta=beta)
    _check_parameters(v_, a_, beta_)
    p = _upper_probability(v_, a_, beta_)
    upper, lower = _conditional_means(v_, a_, beta_)
    return (p * upper + (1.0 - p) * lower).to(dtype)


# ---------------------------------------------------------------------------------------
# exact sampler of J*(1, z): exit time from (-1, 1) of Brownian motion with drift z
# ---------------------------------------------------------------------------------------


def _exponential(n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    # by inversion: several times faster than Tensor.exponential_ for float64 on CPU
    return -torch.log(1.0 - _uniform(n, like, generator))


def _uniform(n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, dtype=like.dtype, device=like.device, generator=generator)


def _store(out: Tensor, pending: Tensor, x: Tensor, keep: Tensor) -> Tensor:
    """Write the kept draws ``x[keep]`` to ``out[pending[keep]]``; return the still pending."""
    kept = keep.nonzero().squeeze(1)
    out[pending[kept]] = x[kept]
    return pending[(~keep).nonzero().squeeze(1)]


def _levy_truncated(z: Tensor, generator: torch.Generator | None) -> Tensor:
    """IG(1/z, 1) on ``(0, 0.64]`` for ``z < 1/0.64``: 1/X = N^2 with N beyond 1/sqrt(0.64),
    accepted with probability ``exp(-z^2 X / 2)`` (at least 0.46)."""
    out = torch.empty_like(z)
    pending = torch.arange(z.numel(), device=z.device)
    tail = math.erfc(1.0 / math.sqrt(2.0 * _T_SPLIT)) / 2.0  # P(N > 1/sqrt(t))
    while pending.numel():
        zz = z[pending]
        n = zz.numel()
        # 1 - U lies in (0, 1], so N is finite: N = -ndtri((1 - U) P(N > 1.25)) >= 1.25
        normal = torch.special.ndtri((1.0 - _uniform(n, zz, generator)) * tail)
        x = 1.0 / (normal * normal)
        keep = _exponential(n, zz, generator) >= 0.5 * zz * zz * x
        pending = _store(out, pending, x, keep)
    return out


def _inverse_gaussian_truncated(z: Tensor, generator: torch.Generator | None) -> Tensor:
    """IG(1/z, 1) on ``(0, 0.64]`` for ``z >= 1/0.64``: Michael, Schucany & Haas (1976) draws
    kept when below 0.64 (probability above one half)."""
    out = torch.empty_like(z)
    pending = torch.arange(z.numel(), device=z.device)
    while pending.numel():
        mu = 1.0 / z[pending]
        n = mu.numel()
        s = 0.5 * mu * torch.randn(n, dtype=mu.dtype, device=mu.device, generator=generator) ** 2
        x = mu / (1.0 + s + torch.sqrt(s * (2.0 + s)))  # smaller root, free of cancellation
        x = torch.where(_uniform(n, mu, generator) * (mu + x) > mu, mu * mu / x, x)
        pending = _store(out, pending, x, x <= _T_SPLIT)
    return out


def _truncated_inverse_gaussian(z: Tensor, generator: torch.Generator | None) -> Tensor:
    """Draws from IG(mean 1/z, shape 1) truncated to ``(0, 0.64]``; ``z >= 0`` (1-D)."""
    out = torch.empty_like(z)
    small = z < 1.0 / _T_SPLIT
    for part, sampler in ((small, _levy_truncated), (~small, _inverse_gaussian_truncated)):
        index = part.nonzero().squeeze(1)
        if index.numel():
            out[index] = sampler(z[index], generator)
    return out


def _series_exponent(m: int, x: Tensor, right: Tensor) -> Tensor:
    """log(a_m / a_0) - log(2m + 1) on both pieces of the J* proposal."""
    scaled = torch.where(right, (math.pi**2 / 2) * x, 2.0 / torch.where(right, torch.ones_like(x), x))
    return -m * (m + 1) * scaled


def _sample_jstar(z: Tensor, generator: torch.Generator | None) -> Tensor:
    """Exact draws of J*(1, z), density ``cosh(z) exp(-z^2 t/2) f_0(t)``; ``z >= 0`` (1-D)."""
    t = _T_SPLIT
    k = math.pi**2 / 8 + 0.5 * z * z
    log_p = math.log(math.pi / 2) - torch.log(k) - k * t
    # q = 2 e^{-z} [Phi((zt - 1)/sqrt t) + e^{2z} Phi(-(zt + 1)/sqrt t)]: IG(1/z, 1) mass on (0, t]
    # times 2 e^{-z}; the second Phi underflows to 0 long before z reaches 300
    log_q = math.log(2.0) - z + torch.log(
        torch.special.ndtr((z * t - 1.0) / math.sqrt(t))
        + torch.exp(2.0 * z.clamp(max=300.0)) * torch.special.ndtr(-(z * t + 1.0) / math.sqrt(t))
    )
    prob_exponential = torch.sigmoid(log_p - log_q)
    out = torch.empty_like(z)
    pending = torch.arange(z.numel(), device=z.device)
    while pending.numel():
        n = pending.numel()
        use_exponential = _uniform(n, z, generator) < prob_exponential[pending]
        x = t + _exponential(n, z, generator) / k[pending]
        ig = (~use_exponential).nonzero().squeeze(1)
        if ig.numel():
            x[ig] = _truncated_inverse_gaussian(z[pending[ig]], generator)
        # accept if V < f_0(x) / a_0(x) = 1 - a_1/a_0 + a_2/a_0 - ...; the partial sums
        # bracket the limit, so the first term settles all but about 0.5 % of the draws
        right = x > t
        y = _uniform(n, z, generator)
        partial = 1.0 - 3.0 * torch.exp(_series_exponent(1, x, right))
        accept = y < partial
        open_ = (~accept).nonzero().squeeze(1)
        if open_.numel():
            xo, ro, yo, po = x[open_], right[open_], y[open_], partial[open_]
            decided = torch.zeros_like(ro)
            accept_o = torch.zeros_like(ro)
            m = 1
            while not bool(decided.all()):
                m += 1
                ratio = (2 * m + 1) * torch.exp(_series_exponent(m, xo, ro))
                if m % 2:
                    po = po - ratio
                    now = ~decided & (yo < po)
                    accept_o |= now
                else:
                    po = po + ratio
                    now = ~decided & (yo > po)
                decided |= now
            accept[open_] = accept_o
        pending = _store(out, pending, x, accept)
    return out


# ---------------------------------------------------------------------------------------
# simulator
# ---------------------------------------------------------------------------------------


def _walk_on_intervals(
    v: Tensor, a: Tensor, beta: Tensor, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Exact decision times and choices for flat float64 parameter vectors."""
    n = v.numel()
    time_out = torch.empty_like(v)
    choice_out = torch.empty_like(v)
    index = torch.arange(n, device=v.device)
    x = beta * a
    elapsed = torch.zeros_like(v)
    steps = 0
    while index.numel():
        steps += 1
        if steps > _MAX_STEPS:
            raise RuntimeError("diffusion walk did not terminate; please report this as a bug")
        lower_real = 2.0 * x <= a
        upper_real = 2.0 * x >= a
        r = torch.where(lower_real, x, a - x)
        drift = v * r
        elapsed = elapsed + r * r * _sample_jstar(drift.abs(), generator)
        up = _uniform(index.numel(), v, generator) < torch.sigmoid(2.0 * drift)
        done = torch.where(up, upper_real, lower_real)
        finished = done.nonzero().squeeze(1)
        if finished.numel():
            time_out[index[finished]] = elapsed[finished]
            choice_out[index[finished]] = up[finished].to(v.dtype)
            keep = (~done).nonzero().squeeze(1)
            index, x, r, up, a, v, elapsed = (t[keep] for t in (index, x, r, up, a, v, elapsed))
        x = torch.where(up, x + r, x - r)
    return time_out, choice_out


def simulate_diffusion(
    v: TensorLike,
    a: TensorLike,
    beta: TensorLike,
    tau: TensorLike,
    generator: torch.Generator | None = None,
    method: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Simulate one Wiener diffusion trial per element of the broadcast parameters.

    Args:
        v: drift rate (real).
        a: boundary separation, ``> 0``.
        beta: relative starting point, in ``(0, 1)``; the walk starts at ``beta * a``.
        tau: non-decision time, ``>= 0`` (seconds).
        generator: torch generator for all random draws (reproducible results); it must
            live on the parameters' device.
        method: ``"auto"`` or ``"intervals"`` (the same exact walk on symmetric intervals,
            see the module docstring).

    Returns:
        ``(rt, choice)`` with the broadcast shape and the parameters' floating dtype:
        ``rt = tau + T`` and ``choice`` 1.0 for the upper boundary, 0.0 for the lower.

    Example:
        >>> import torch
        >>> gen = torch.Generator().manual_seed(0)
        >>> rt, choice = simulate_diffusion(torch.zeros(5), 1.0, 0.5, 0.2, generator=gen)
        >>> rt.shape, bool(((choice == 0) | (choice == 1)).all())
        (torch.Size([5]), True)
    """
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(_METHODS)}")
    (v_, a_, beta_, tau_), dtype = _broadcast(v=v, a=a, beta=beta, tau=tau)
    _check_parameters(v_, a_, beta_, tau_)
    shape = v_.shape
    decision, choice = _walk_on_intervals(
        v_.reshape(-1), a_.reshape(-1), beta_.reshape(-1), generator
    )
    rt = tau_ + decision.reshape(shape)
    return rt.to(dtype), choice.reshape(shape).to(dtype)


# ---------------------------------------------------------------------------------------
# first-passage density
# ---------------------------------------------------------------------------------------


def _split(where: Tensor, if_true, if_false, *args: Tensor) -> Tensor:
    """``if_true(*args)`` where ``where`` holds, ``if_false(*args)`` elsewhere, each evaluated on its own elements only.

    ``args`` have the shape of ``where``; the functions map 1-D tensors elementwise.  One
    ``nonzero`` per side and ``index_select`` / ``index_copy`` (differentiable): cheaper than
    boolean indexing of every argument and than ``torch.where`` over both full evaluations.
    """
    flat = [a.reshape(-1) for a in args]
    inside = where.reshape(-1)
    out = torch.empty_like(flat[0])
    for side, fn in ((inside, if_true), (~inside, if_false)):
        idx = side.nonzero().squeeze(1)
        if idx.numel():
            out = out.index_copy(0, idx, fn(*(a.index_select(0, idx) for a in flat)))
    return out.reshape(where.shape)


def _log_fpt_small(u: Tensor, w: Tensor, wc: Tensor, terms: int = _SMALL_TERMS) -> Tensor:
    """log f_0(u | w) from the small-time series, summed relative to its k = 0 term.

    ``wc = 1 - w``, passed separately so that it keeps full precision near 0.  The terms
    are paired so that the sum stays accurate where the density vanishes linearly:
    ``(k, -k)`` for ``w < 1/2`` (density ~ w as w -> 0) and ``(k, -k - 1)`` for
    ``w >= 1/2`` (density ~ 1 - w as w -> 1); each pair is written with ``expm1``.  Each
    element's pairing is evaluated on its own subset (not both everywhere and one kept).
    """
    total = _split(w < 0.5, lambda u_, w_, wc_: _small_sum_low(u_, w_, terms),
                   lambda u_, w_, wc_: _small_sum_high(u_, wc_, terms), u, w, wc)
    return -0.5 * math.log(2 * math.pi) - 1.5 * torch.log(u) - w * w / (2.0 * u) + torch.log(total)


def _small_sum_low(u: Tensor, w: Tensor, terms: int) -> Tensor:
    """``w < 1/2``: ``w + sum_k e^{-2k(k - w)/u} [w (1 + e^{-c}) + 2k expm1(-c)]``, ``c = 4kw/u``."""
    total = w.clone()
    for k in range(1, terms + 1):
        c = 4.0 * k * w / u
        total = total + torch.exp(-2.0 * k * (k - w) / u) * (w * (1.0 + torch.exp(-c)) + 2.0 * k * torch.expm1(-c))
    return total


def _small_sum_high(u: Tensor, wc: Tensor, terms: int) -> Tensor:
    """``w >= 1/2``, ``w' = 1 - w``, odd ``m = 2j + 1``: ``sum_m e^{-(m - 1)(m + 1 - 2w')/(2u)} [-m expm1(-c) - w' (1 + e^{-c})]``, ``c = 2mw'/u``."""
    total = torch.zeros_like(wc)
    for j in range(terms):
        m = 2 * j + 1
        c = 2.0 * m * wc / u
        pair = -m * torch.expm1(-c) - wc * (1.0 + torch.exp(-c))
        total = total + torch.exp(-(m - 1) * (m + 1 - 2.0 * wc) / (2.0 * u)) * pair
    return total


def _log_fpt_large(u: Tensor, w: Tensor, wc: Tensor, terms: int = _LARGE_TERMS) -> Tensor:
    """log f_0(u | w), large-time series relative to the k = 1 exponential; ``wc = 1 - w``."""
    # sin(k pi w) = (-1)^(k+1) sin(k pi (1 - w)): use the smaller of w, 1 - w for accuracy
    low = w < 0.5
    near = torch.where(low, w, wc)
    total = torch.zeros_like(u)
    for k in range(1, terms + 1):
        sign = torch.where(low, torch.ones_like(w), torch.full_like(w, (-1.0) ** (k + 1)))
        total = total + k * torch.exp(-(k * k - 1) * (math.pi**2 / 2) * u) * sign * torch.sin(k * math.pi * near)
    return math.log(math.pi) - (math.pi**2 / 2) * u + torch.log(total)


def wiener_log_density(
    rt: TensorLike,
    choice: TensorLike,
    v: TensorLike,
    a: TensorLike,
    beta: TensorLike,
    tau: TensorLike,
) -> Tensor:
    """Log density of ``rt`` at the boundary ``choice`` (1.0 upper, 0.0 lower), elementwise.

    The joint density of (response time, boundary): it integrates over ``rt`` to
    ``P(upper)`` for ``choice = 1`` and ``1 - P(upper)`` for ``choice = 0``; it is
    ``-inf`` for ``rt <= tau``.  Navarro & Fuss (2009) series, see the module docstring.
    For ``choice = 1`` this is the quantity of Stan's ``wiener_lpdf`` with ``alpha = a``,
    ``tau``, ``beta`` and ``delta = v`` (same parameterization; not compared numerically
    against Stan here).  Differentiable in all parameters.

    Example:
        >>> import math
        >>> lp = wiener_log_density(0.8, 1.0, 1.0, 1.5, 0.5, 0.3)
        >>> round(math.exp(float(lp)), 4)
        0.7685
    """
    args, dtype = _broadcast(expand=False, rt=rt, choice=choice, v=v, a=a, beta=beta, tau=tau)
    _check_finite(rt=args[0])
    _check_parameters(*args[2:])
    if not bool(((args[1] == 1) | (args[1] == 0)).all()):
        raise ValueError("choice must be 1.0 (upper boundary) or 0.0 (lower boundary)")
    rt_, choice_, v_, a_, beta_, tau_ = torch.broadcast_tensors(*args)
    upper = choice_ == 1
    v_ = torch.where(upper, -v_, v_)
    w = torch.where(upper, 1.0 - beta_, beta_)
    wc = torch.where(upper, beta_, 1.0 - beta_)
    t = rt_ - tau_
    positive = t > 0
    u = torch.where(positive, t, torch.ones_like(t)) / (a_ * a_)
    small = u < _U_SWITCH
    log_f0 = _split(small, _log_fpt_small, _log_fpt_large, u, w, wc)  # each series only where it is used
    log_f = log_f0 - 2.0 * torch.log(a_) - v_ * a_ * w - 0.5 * v_ * v_ * t
    return torch.where(positive, log_f, torch.full_like(log_f, -math.inf)).to(dtype)
