"""Side-by-side comparison of amortized and reference (Stan) posterior draws, one row per parameter.

For a parameter with amortized draws ``a`` and reference draws ``r``:

    mean_diff_in_sd = |mean(a) - mean(r)| / sd(r)     (0 is perfect; < 0.1 is typically fine)
    sd_ratio        = sd(a) / sd(r)                   (1 is perfect; > 1 under-confident)
    overlap_q       = |I_a ∩ I_r| / |I_a ∪ I_r|       for the central q-intervals, q = 50 %, 95 %

The central q-interval is ``[quantile((1 - q) / 2), quantile((1 + q) / 2)]`` (numpy's default
linear interpolation).  The overlap is the intersection-over-union (Jaccard index) of the two
intervals: 1 for identical intervals, 0 for disjoint ones, and symmetric in ``a`` and ``r``.
For two intervals of equal width ``w`` shifted by ``d < w`` it is ``(w - d) / (w + d)``; an
interval nested in one twice as wide gives 0.5.  (Intersection over the *reference* width
instead would reward an over-wide amortized interval with a perfect 1.)  Standard deviations
use ``ddof=1``.

Example:
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"mu": rng.normal(size=4000)})
    >>> compare_draws(ref, ref).loc["mu", ["mean_diff_in_sd", "sd_ratio", "overlap_95"]].tolist()
    [0.0, 1.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["compare_draws"]

# bookkeeping columns of draw frames (Stan fits and amortized samples), never parameters
_NOT_PARAMETERS = frozenset({"chain", "draw", "dataset", "group", "iteration"})


def _is_parameter(column: object) -> bool:
    return isinstance(column, str) and column not in _NOT_PARAMETERS and not column.endswith("__")


def _interval_overlap(a: np.ndarray, r: np.ndarray, mass: float) -> float:
    """Intersection over union of the central ``mass`` intervals of ``a`` and ``r``."""
    probs = [(1.0 - mass) / 2.0, (1.0 + mass) / 2.0]
    a_lo, a_hi = np.quantile(a, probs)
    r_lo, r_hi = np.quantile(r, probs)
    intersection = max(0.0, min(a_hi, r_hi) - max(a_lo, r_lo))
    union = max(a_hi, r_hi) - min(a_lo, r_lo)
    if union == 0.0:  # both intervals are the same single point
        return 1.0 if a_lo == r_lo else 0.0
    return float(intersection / union)


def compare_draws(
    amortized: pd.DataFrame, reference: pd.DataFrame, parameters: Sequence[str] | None = None
) -> pd.DataFrame:
    """Compare posterior draws of the same parameters from two methods, one row per parameter.

    Args:
        amortized: Draws of the approximation, one column per parameter (e.g. from an amortizer).
        reference: Reference draws, e.g. ``StanFit.draws``; names must match (``r_Intercept[3]``).
        parameters: Parameters to compare; default all columns the two frames share, in the
            reference's order, except bookkeeping columns (``chain``, ``draw``, ``dataset``,
            ``group``) and Stan's sampler columns (``lp__``, ...).

    Returns:
        Index ``parameter``; columns ``mean_amortized``, ``mean_reference``, ``sd_amortized``,
        ``sd_reference``, ``mean_diff_in_sd``, ``sd_ratio``, ``overlap_50``, ``overlap_95``
        (see the module docstring for the definitions).

    Raises:
        ValueError: a requested parameter is missing from either frame, no common parameters,
            fewer than 2 draws, or non-finite draws.
    """
    for label, frame in (("amortized", amortized), ("reference", reference)):
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"{label} must be a pandas DataFrame, got {type(frame).__name__}")
    if parameters is None:
        shared = set(amortized.columns)
        names = [c for c in reference.columns if _is_parameter(c) and c in shared]
        if not names:
            raise ValueError("amortized and reference draws share no parameter columns")
    else:
        names = list(parameters)
        for label, frame in (("amortized", amortized), ("reference", reference)):
            missing = [p for p in names if p not in frame.columns]
            if missing:
                raise ValueError(f"{label} draws have no column(s) {', '.join(missing)}")
    rows = []
    for name in names:
        a = amortized[name].to_numpy(dtype=np.float64)
        r = reference[name].to_numpy(dtype=np.float64)
        for label, values in (("amortized", a), ("reference", r)):
            if values.size < 2:
                raise ValueError(f"{label} draws of {name!r} need at least 2 values")
            if not np.all(np.isfinite(values)):
                raise ValueError(f"{label} draws of {name!r} contain NaN or inf")
        mean_a, mean_r = float(np.mean(a)), float(np.mean(r))
        sd_a, sd_r = float(np.std(a, ddof=1)), float(np.std(r, ddof=1))
        rows.append(
            {
                "parameter": name,
                "mean_amortized": mean_a,
                "mean_reference": mean_r,
                "sd_amortized": sd_a,
                "sd_reference": sd_r,
                "mean_diff_in_sd": abs(mean_a - mean_r) / sd_r if sd_r > 0 else float("nan"),
                "sd_ratio": sd_a / sd_r if sd_r > 0 else float("nan"),
                "overlap_50": _interval_overlap(a, r, 0.50),
                "overlap_95": _interval_overlap(a, r, 0.95),
            }
        )
    return pd.DataFrame(rows).set_index("parameter")
