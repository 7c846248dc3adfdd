"""Numerical reference density and distribution function of the full diffusion decision model from R's rtdists.

:class:`amortbayes.models.full_ddm.FullDDM` has no closed-form likelihood once its drift,
starting point and non-decision time vary across trials.  R's rtdists package (Singmann et
al.) integrates the Wiener first-passage density over those variabilities numerically
(``ddiffusion``, ``pdiffusion``; the code of fast-dm, Voss & Voss 2008); this module calls
it through rpy2 and translates the parameterization:

    rtdists         amortbayes (FullDDM.natural_parameters)
    a               a
    v               v            (positive drift favours the upper boundary)
    t0, st0         t0, st0      (non-decision time t0 + U(0, st0))
    z  (absolute)   z * a        (z relative, in (0, 1))
    sz (absolute)   sz * a       (sz the width of the relative start's range)
    sv              sv
    s = 1           unit diffusion coefficient
    "upper"         choice = 1, rt_signed > 0
    "lower"         choice = 0, rt_signed < 0

The boundary mapping was checked against the closed form: with ``sv = sz = st0 = 0``,
rtdists' ``ddiffusion(rt, "upper", a, v, t0, z * a)`` equals
``exp(wiener_log_density(rt, 1.0, v, a, z, t0))`` to about ``1e-8`` in the log (and likewise
"lower" with ``choice = 0``), and ``pdiffusion(Inf, "upper", ...)`` is ``P(upper)``, which
grows with ``v``.

R is embedded in this process on first use.  :func:`rtdists_available` first asks a
subprocess, because R ends its process on a fatal start-up error instead of raising.

References:
    Singmann, Brown, Gretton & Heathcote (2022). rtdists: Response time distributions.
    R package version 0.11.
    Voss & Voss (2008). A fast numerical algorithm for the estimation of diffusion model
    parameters. Journal of Mathematical Psychology 52, 1-9.

Example:
    >>> from amortbayes.models.diffusion import wiener_log_density
    >>> exact = float(wiener_log_density(0.8, 1.0, 1.0, 1.5, 0.5, 0.3))
    >>> if rtdists_available():  # without variability R's numerical density is the closed form
    ...     lp = ddiffusion_log([0.8], {"v": 1.0, "a": 1.5, "z": 0.5, "t0": 0.3})
    ...     assert abs(lp[0] - exact) < 1e-6
"""

from __future__ import annotations

import functools
import subprocess
import sys
from typing import Any, Mapping

import numpy as np

__all__ = ["ddiffusion_log", "pdiffusion", "rtdists_available"]

_KEYS = ("v", "a", "z", "t0", "sv", "sz", "st0")
_PROBE = "import rpy2.robjects; from rpy2.robjects.packages import importr; importr('rtdists')"


@functools.cache
def _probe() -> str | None:
    """Why rpy2 with rtdists cannot be loaded, or None (asked once, in a subprocess)."""
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{type(error).__name__}: {error}"
    lines = (out.stderr or out.stdout).strip().splitlines()
    return None if out.returncode == 0 else (lines[-1] if lines else f"exit status {out.returncode}")


@functools.cache
def _rtdists() -> Any:
    reason = _probe()
    if reason is None:
        try:
            from rpy2.robjects.packages import importr

            return importr("rtdists")
        except Exception as error:  # noqa: BLE001 - no R, no rtdists, or an rpy2 that does not load this R
            reason = f"{type(error).__name__}: {error}"
    raise ImportError(f"R package rtdists cannot be loaded through rpy2 ({reason}); scripts/setup-r.sh installs "
                      "R, rtdists and rpy2 (rpy2 is the project's 'r' extra)")


def rtdists_available() -> bool:
    """Whether R's rtdists can be called through rpy2 here (loads R into this process when it can).

    Example:
        >>> rtdists_available() in (True, False)
        True
    """
    try:
        _rtdists()
    except ImportError:
        return False
    return True


def _parameters(theta: Mapping[str, float] | Any, model: Any = None) -> dict[str, float]:
    """rtdists' arguments (absolute ``z`` and ``sz``) of one parameter set."""
    if isinstance(theta, Mapping):
        unknown = sorted(set(theta) - set(_KEYS))
        missing = [k for k in _KEYS[:4] if k not in theta]
        if unknown or missing:
            raise ValueError(f"theta needs the keys v, a, z, t0 and optionally sv, sz, st0 (z and sz relative to a); "
                             f"missing {missing}, unknown {unknown}")
        p = {k: float(theta.get(k, 0.0)) for k in _KEYS}
    else:
        from amortbayes.models.full_ddm import FullDDM

        row = np.asarray(theta, dtype=float).reshape(1, -1)
        if model is None:
            if row.shape[1] not in (4, 7):
                raise ValueError(f"theta must be a dict or one parameter set of FullDDM (4 or 7 values), got {row.shape[1]}")
            model = FullDDM(variability=row.shape[1] == 7)
        p = {k: float(value[0]) for k, value in model.natural_parameters(row).items()}
    if not (np.isfinite(p["v"]) and p["a"] > 0 and 0 < p["z"] < 1 and p["t0"] >= 0 and p["sv"] >= 0
            and p["st0"] >= 0 and 0 <= p["sz"] < 2 * min(p["z"], 1 - p["z"])):
        raise ValueError(f"diffusion parameters outside their support (a > 0, 0 < z < 1, t0 >= 0, sv >= 0, st0 >= 0, "
                         f"0 <= sz < 2 min(z, 1 - z)): {p}")
    return {"a": p["a"], "v": p["v"], "t0": p["t0"], "z": p["z"] * p["a"], "sz": p["sz"] * p["a"],
            "sv": p["sv"], "st0": p["st0"]}


def _responses(choice: np.ndarray) -> Any:
    from rpy2.robjects import StrVector

    if not np.all((choice == 0) | (choice == 1)):
        raise ValueError("choice must be 1 (upper boundary) or 0 (lower boundary)")
    return StrVector(["upper" if c == 1 else "lower" for c in choice])


def ddiffusion_log(x_signed, theta: Mapping[str, float] | Any, model: Any = None, precision: float = 3.0) -> np.ndarray:
    """Log density of signed response times ``x_signed (N,)`` at one parameter set, from rtdists' ``ddiffusion``.

    Args:
        x_signed: ``rt`` for upper-boundary responses, ``-rt`` for lower ones (FullDDM's
            ``rt_signed``).
        theta: a dict ``{"v", "a", "z", "t0"}`` with optional ``"sv"``, ``"sz"``, ``"st0"``
            (``z`` and ``sz`` relative to ``a``, as :meth:`FullDDM.natural_parameters`), or
            one row of ``model``'s parameters (a 4- or 7-vector reads as FullDDM's simple
            or full model when ``model`` is None).
        model: the :class:`~amortbayes.models.full_ddm.FullDDM` whose column order
            ``theta`` follows.
        precision: rtdists' ``precision`` (decimal digits of the numerical integration).

    Returns:
        ``(N,)`` float64 log densities; ``-inf`` where ``rt <= t0``.
    """
    rt, choice = np.abs(np.asarray(x_signed, dtype=float).reshape(-1)), (np.asarray(x_signed) > 0).reshape(-1)
    args = _parameters(theta, model)
    if rt.size == 0:
        return np.zeros(0)
    r = _rtdists()  # before any rpy2 import: a clear ImportError where R cannot be embedded
    from rpy2.robjects import FloatVector

    density = r.ddiffusion(FloatVector(rt.tolist()), response=_responses(choice.astype(float)),
                                    precision=float(precision), **args)
    with np.errstate(divide="ignore"):
        return np.log(np.maximum(np.asarray(density, dtype=float), 0.0))


def pdiffusion(rt, choice, theta: Mapping[str, float] | Any, model: Any = None, precision: float = 3.0) -> np.ndarray:
    """Defective distribution function ``P(RT <= rt, boundary = choice)`` from rtdists' ``pdiffusion``, ``(N,)``.

    ``choice`` is 1 (upper) or 0 (lower), one per ``rt`` or one for all; ``rt = inf``
    gives the boundary's probability.  ``theta``, ``model`` and ``precision`` as in
    :func:`ddiffusion_log`.
    """
    rt = np.asarray(rt, dtype=float).reshape(-1)
    choice = np.broadcast_to(np.asarray(choice, dtype=float), rt.shape)
    args = _parameters(theta, model)
    if rt.size == 0:
        return np.zeros(0)
    r = _rtdists()
    from rpy2.robjects import FloatVector

    cdf = r.pdiffusion(FloatVector(rt.tolist()), response=_responses(choice), precision=float(precision), **args)
    return np.asarray(cdf, dtype=float)
