"""Full (Ratcliff) diffusion decision model with across-trial variability; its likelihood has no closed form.

One data set is ``N`` independent trials of one person in one condition.  Trial ``i`` draws
its own drift, starting point and non-decision time, then runs the Wiener diffusion of
:mod:`amortbayes.models.diffusion` (unit diffusion coefficient, Stan's parameterization):

    v_i = v + sv e_i,                 e_i ~ N(0, 1)      (drift, normal across trials)
    beta_i = z + sz (u_i - 1/2),      u_i ~ U(0, 1)      (relative start, uniform around z)
    tau_i = t0 + st0 w_i,             w_i ~ U(0, 1)      (non-decision time)
    (rt_i, choice_i) ~ Wiener(v_i, a, beta_i, tau_i)

The start must stay inside ``(0, a)``, that is ``sz < 2 min(z, 1 - z)``.  The model is
therefore parameterized by the fraction ``sz_frac`` in ``[0, 1)`` of the widest range the
start allows, ``sz = sz_frac * 2 min(z, 1 - z)``, which keeps every prior (and posterior)
draw valid.  The parameters, in column order, are

    v (real), a (> 0), z (in (0, 1)), t0 (> 0), sv (>= 0), sz_frac (in [0, 1)), st0 (>= 0),

and ``variability=False`` drops the last three (``sv = sz = st0 = 0``): the simple
4-parameter Wiener model.  The default prior is weakly informative on human response-time
scales (seconds):

    v ~ N(0, 2^2),   a ~ LogNormal(0.4, 0.4),   z ~ Beta(10, 10),   t0 ~ LogNormal(-1.2, 0.3),
    sv ~ HalfNormal(1),   sz_frac ~ Beta(1, 3),   st0 ~ U(0, 0.3),

all independent (``a`` has median 1.5, ``t0`` median 0.30 s).

**Data.**  One continuous column ``rt_signed``: ``rt`` for an upper-boundary response and
``-rt`` for a lower-boundary one, a lossless encoding of ``(rt, choice)`` that a continuous
density network can model (:func:`signed_rt`, :func:`split_signed_rt`).  A joint amortizer's
likelihood network models it as the boundary (a category) and ``log(rt - t0)`` given it
(:meth:`FullDDM.row_encoding`), so no surrogate density falls below the non-decision time.

**Likelihood.**  The density of one trial is the Wiener first-passage density averaged over
``(v_i, beta_i, tau_i)``.  The average over ``v_i`` is Gaussian and has a closed form, those
over ``beta_i`` and ``tau_i`` do not: the full model's density is only available numerically
(``amortbayes.reference.rtdists``, R's rtdists), so ``FullDDM()`` has no
``log_likelihood_rows``.  With ``variability=False`` it is the exact series of
:func:`amortbayes.models.diffusion.wiener_log_density`.

References:
    Ratcliff (1978). A theory of memory retrieval. Psychological Review 85, 59-108.
    Ratcliff & Tuerlinckx (2002). Estimating parameters of the diffusion model: approaches
    to dealing with contaminant reaction times and parameter variability. Psychonomic
    Bulletin & Review 9, 438-481.
    Voss & Voss (2008). A fast numerical algorithm for the estimation of diffusion model
    parameters. Journal of Mathematical Psychology 52, 1-9.
    Radev, Schmitt, Pratz, Picchini, Koethe & Buerkner (2023). JANA: Jointly amortized
    neural approximation of complex Bayesian models. UAI.

Example:
    >>> import torch
    >>> model = FullDDM()
    >>> model.parameter_names, model.data_names
    (('v', 'a', 'z', 't0', 'sv', 'sz_frac', 'st0'), ('rt_signed',))
    >>> theta = model.sample_prior(3, torch.Generator().manual_seed(0))
    >>> x = model.simulate_data(theta, 100, torch.Generator().manual_seed(1))
    >>> x.shape, x.dtype, bool(torch.isfinite(model.log_prior(theta)).all())
    (torch.Size([3, 100, 1]), torch.float32, True)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from amortbayes.models.diffusion import simulate_diffusion, wiener_log_density
from amortbayes.simulation import FlatModel, numpy_rng

__all__ = ["FullDDM", "signed_rt", "split_signed_rt"]

_NAMES = ("v", "a", "z", "t0", "sv", "sz_frac", "st0")
_START_GUARD = 1e-12  # per-trial starts are kept this far inside (0, 1) against rounding
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def signed_rt(rt, choice):
    """``rt`` for an upper-boundary response (``choice = 1``), ``-rt`` for a lower one (``choice = 0``).

    Works elementwise on numpy arrays, torch tensors and numbers.

    Example:
        >>> import numpy as np
        >>> signed_rt(np.array([0.5, 0.7]), np.array([1.0, 0.0])).tolist()
        [0.5, -0.7]
    """
    c = choice if isinstance(choice, Tensor) else np.asarray(choice, dtype=float)
    if not bool(((c == 0) | (c == 1)).all()):
        raise ValueError("choice must be 1 (upper boundary) or 0 (lower boundary)")
    return rt * (2 * c - 1)


def split_signed_rt(x):
    """``(rt, choice)`` of signed response times: ``rt = |x|``, ``choice = 1.0`` where ``x > 0``, else ``0.0``.

    Tensors stay tensors (same dtype); anything else becomes float64 numpy arrays.

    Example:
        >>> rt, choice = split_signed_rt([0.5, -0.7])
        >>> rt.tolist(), choice.tolist()
        ([0.5, 0.7], [1.0, 0.0])
    """
    if isinstance(x, Tensor):
        return x.abs(), (x > 0).to(x.dtype)
    x = np.asarray(x, dtype=float)
    return np.abs(x), (x > 0).astype(float)


def _normal_lpdf(x: Tensor, loc: float, scale: float) -> Tensor:
    return -0.5 * ((x - loc) / scale) ** 2 - math.log(scale) - _LOG_SQRT_2PI


def _beta_lpdf(x: Tensor, a: float, b: float) -> Tensor:
    log_norm = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    return torch.special.xlogy(a - 1.0, x) + torch.special.xlogy(b - 1.0, 1.0 - x) - log_norm


@dataclasses.dataclass(frozen=True)
class FullDDM(FlatModel):
    """Ratcliff diffusion model with across-trial variability (``variability=False``: the 4-parameter Wiener model).

    Args:
        variability: include ``sv``, ``sz_frac`` and ``st0`` (the full model).
        n_obs: inclusive range of trials per data set.
        v_prior: ``(mean, sd)`` of the normal prior of ``v``.
        a_prior: ``(meanlog, sdlog)`` of the lognormal prior of ``a``.
        z_prior: ``(alpha, beta)`` of the beta prior of ``z``.
        t0_prior: ``(meanlog, sdlog)`` of the lognormal prior of ``t0``.
        sv_scale: scale of the half-normal prior of ``sv``.
        sz_frac_prior: ``(alpha, beta)`` of the beta prior of ``sz_frac``.
        st0_max: upper end of the uniform prior of ``st0``.

    Example:
        >>> FullDDM(variability=False).parameter_names
        ('v', 'a', 'z', 't0')
        >>> FullDDM().parameter_support
        ('real', 'positive', 'unit', 'positive', 'positive', 'unit', 'interval:0:0.3')
    """

    variability: bool = True
    n_obs: tuple[int, int] = (50, 200)
    v_prior: tuple[float, float] = (0.0, 2.0)
    a_prior: tuple[float, float] = (0.4, 0.4)
    z_prior: tuple[float, float] = (10.0, 10.0)
    t0_prior: tuple[float, float] = (-1.2, 0.3)
    sv_scale: float = 1.0
    sz_frac_prior: tuple[float, float] = (1.0, 3.0)
    st0_max: float = 0.3

    name = "full_ddm"
    data_names = ("rt_signed",)

    def __post_init__(self) -> None:
        for field in ("n_obs", "v_prior", "a_prior", "z_prior", "t0_prior", "sz_frac_prior"):
            value = tuple(getattr(self, field))
            if len(value) != 2:
                raise ValueError(f"{field} must have two entries, got {value!r}")
            object.__setattr__(self, field, value)
        positive = {"v_prior sd": self.v_prior[1], "a_prior sdlog": self.a_prior[1],
                    "t0_prior sdlog": self.t0_prior[1], "sv_scale": self.sv_scale, "st0_max": self.st0_max,
                    **{f"z_prior[{i}]": self.z_prior[i] for i in (0, 1)},
                    **{f"sz_frac_prior[{i}]": self.sz_frac_prior[i] for i in (0, 1)}}
        bad = [k for k, value in positive.items() if not (math.isfinite(value) and value > 0)]
        if bad:
            raise ValueError(f"FullDDM prior settings must be finite and > 0: {', '.join(bad)}")

    @property
    def parameter_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return _NAMES if self.variability else _NAMES[:4]

    @property
    def parameter_support(self) -> tuple[str, ...]:  # type: ignore[override]
        simple = ("real", "positive", "unit", "positive")
        return simple + ("positive", "unit", f"interval:0:{self.st0_max:g}") if self.variability else simple

    def row_encoding(self) -> dict[str, str]:
        """How a likelihood network should see a trial: boundary as a category, ``log(rt - t0)`` (no response before t0)."""
        return {"kind": "signed_rt", "shift": "t0"}

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, D)`` float32 draws from the prior of the module docstring."""
        rng = numpy_rng(generator)
        cols = [
            self.v_prior[0] + self.v_prior[1] * torch.randn(n, generator=generator, dtype=torch.float64),
            torch.exp(self.a_prior[0] + self.a_prior[1] * torch.randn(n, generator=generator, dtype=torch.float64)),
            torch.from_numpy(rng.beta(*self.z_prior, n)),
            torch.exp(self.t0_prior[0] + self.t0_prior[1] * torch.randn(n, generator=generator, dtype=torch.float64)),
        ]
        if self.variability:
            cols += [
                self.sv_scale * torch.randn(n, generator=generator, dtype=torch.float64).abs(),
                torch.from_numpy(rng.beta(*self.sz_frac_prior, n)),
                self.st0_max * torch.rand(n, generator=generator, dtype=torch.float64),
            ]
        theta = torch.stack(cols, dim=-1).float()
        # float32 rounding must not reach the open ends of z or sz_frac (probability far below 1e-15)
        theta[:, 2] = theta[:, 2].clamp(1e-6, 1 - 1e-6)
        if self.variability:
            theta[:, 5] = theta[:, 5].clamp(max=1 - 1e-6)
        return theta

    def _columns(self, theta) -> Tensor:
        t = torch.as_tensor(theta, dtype=torch.float64)
        if t.ndim != 2 or t.shape[1] != len(self.parameter_names):
            raise ValueError(f"theta must have shape (M, {len(self.parameter_names)}) with columns "
                             f"{list(self.parameter_names)}, got {tuple(t.shape)}")
        return t

    def log_prior(self, theta) -> Tensor:
        """Exact ``log p(theta)`` of parameter values ``(M, D)``: ``(M,)`` float64, ``-inf`` outside the support.

        Example:
            >>> model = FullDDM(variability=False)
            >>> model.log_prior([[0.0, 1.5, 0.5, 0.3], [0.0, -1.0, 0.5, 0.3]])[1].item()
            -inf
        """
        t = self._columns(theta)
        v, a, z, t0 = t.unbind(-1)[:4]
        ok = torch.isfinite(v) & (a > 0) & (z > 0) & (z < 1) & (t0 > 0)
        one = torch.ones_like(v)
        a_, t0_ = torch.where(ok, a, one), torch.where(ok, t0, one)
        z_ = torch.where(ok, z, 0.5 * one)
        lp = (_normal_lpdf(v, *self.v_prior)
              + _normal_lpdf(torch.log(a_), *self.a_prior) - torch.log(a_)
              + _beta_lpdf(z_, *self.z_prior)
              + _normal_lpdf(torch.log(t0_), *self.t0_prior) - torch.log(t0_))
        if self.variability:
            sv, sz_frac, st0 = t.unbind(-1)[4:]
            ok = ok & (sv >= 0) & (sz_frac >= 0) & (sz_frac < 1) & (st0 >= 0) & (st0 <= self.st0_max)
            lp = (lp + math.log(2.0) + _normal_lpdf(sv, 0.0, self.sv_scale)
                  + _beta_lpdf(torch.where(ok, sz_frac, 0.5 * one), *self.sz_frac_prior) - math.log(self.st0_max))
        return torch.where(ok, lp, torch.full_like(lp, -math.inf))

    def natural_parameters(self, theta) -> dict[str, Tensor]:
        """The per-trial distribution of parameter values ``(M, D)``: ``v, a, z, t0, sv, sz, st0``, each ``(M,)`` float64.

        ``sz = sz_frac * 2 min(z, 1 - z)`` is the width of the relative start's range (in
        units of ``a``; rtdists' absolute ``sz`` is ``sz * a``); ``sv = sz = st0 = 0``
        without variability.  Raises ``ValueError`` outside the support.

        Example:
            >>> p = FullDDM().natural_parameters([[1.0, 1.5, 0.4, 0.3, 0.5, 0.5, 0.1]])
            >>> round(p["sz"].item(), 6)
            0.4
        """
        t = self._columns(theta)
        v, a, z, t0 = t.unbind(-1)[:4]
        zero = torch.zeros_like(v)
        sv, sz_frac, st0 = t.unbind(-1)[4:] if self.variability else (zero, zero, zero)
        checks = {"v finite": torch.isfinite(v), "a > 0": a > 0, "0 < z < 1": (z > 0) & (z < 1), "t0 > 0": t0 > 0,
                  "sv >= 0": sv >= 0, "0 <= sz_frac < 1": (sz_frac >= 0) & (sz_frac < 1), "st0 >= 0": st0 >= 0}
        bad = [k for k, ok in checks.items() if not bool(ok.all())]
        if bad:
            raise ValueError(f"FullDDM parameters outside their support ({', '.join(bad)} fails for some rows)")
        sz = sz_frac * 2.0 * torch.minimum(z, 1.0 - z)
        return {"v": v, "a": a, "z": z, "t0": t0, "sv": sv, "sz": sz, "st0": st0}

    def simulate_data(self, theta, n_obs, generator=None) -> Tensor:
        """``(B, n_obs, 1)`` float32 signed response times, one data set per row of ``theta (B, D)``."""
        p = self.natural_parameters(theta)
        shape = (p["v"].shape[0], int(n_obs))
        v, a, z, t0 = (p[k][:, None].expand(shape) for k in ("v", "a", "z", "t0"))
        if self.variability:
            def uniform() -> Tensor:
                return torch.rand(shape, generator=generator, dtype=torch.float64)

            v = v + p["sv"][:, None] * torch.randn(shape, generator=generator, dtype=torch.float64)
            z = (z + p["sz"][:, None] * (uniform() - 0.5)).clamp(_START_GUARD, 1.0 - _START_GUARD)
            t0 = t0 + p["st0"][:, None] * uniform()
        rt, choice = simulate_diffusion(v, a, z, t0, generator=generator)
        return signed_rt(rt, choice)[..., None].float()

    @property
    def log_likelihood_rows(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """Exact ``log p(x_i | theta)`` of each row of one data set ``x (N, 1)`` at each ``theta (M, 4)``: ``(M, N)``.

        Only the simple model (``variability=False``) has it: the full model's density has
        no closed form, so there the attribute does not exist (``AttributeError``, and
        ``hasattr`` is False); ``amortbayes.reference.rtdists.ddiffusion_log`` computes it
        numerically.

        Example:
            >>> import numpy as np
            >>> simple = FullDDM(variability=False)
            >>> rows = simple.log_likelihood_rows(np.array([[0.8], [-0.6]]), np.array([[1.0, 1.5, 0.5, 0.3]]))
            >>> rows.shape, round(float(np.exp(rows[0, 0])), 4)
            ((1, 2), 0.7685)
            >>> hasattr(FullDDM(), "log_likelihood_rows")
            False
        """
        if self.variability:
            raise AttributeError("FullDDM(variability=True) has no closed-form likelihood (log_likelihood_rows): its "
                                 "density is only available numerically, amortbayes.reference.rtdists.ddiffusion_log")
        return self._wiener_log_likelihood_rows

    def _wiener_log_likelihood_rows(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != 1:
            raise ValueError(f"x must have shape (N, 1) (the column rt_signed), got {x.shape}")
        p = self.natural_parameters(theta)
        rt, choice = split_signed_rt(torch.from_numpy(x[:, 0]))
        lp = wiener_log_density(rt[None], choice[None], *(p[k][:, None] for k in ("v", "a", "z", "t0")))
        return lp.numpy()
