"""Shape, type and finiteness checks shared by the diagnostics (private).

Every diagnostic takes ``draws`` of shape ``(S, L, D)`` (``S`` simulated data sets, ``L``
posterior draws for each, ``D`` parameters) and ``truth`` of shape ``(S, D)``.  For a single
parameter ``(S, L)`` and ``(S,)`` are accepted too.  These helpers turn the inputs into
float64 arrays of the canonical shapes or raise a :class:`ValueError` / :class:`TypeError`
whose message names the offending argument, so that R users calling through reticulate see
what went wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def as_float_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 array, with a :class:`TypeError` for non-numeric input."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}") from error
    return array


def check_finite(array: np.ndarray, name: str) -> None:
    """Raise :class:`ValueError` if ``array`` holds NaN or infinite values."""
    bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")


def as_draws(draws: Any, *, min_draws: int = 1) -> np.ndarray:
    """``draws`` as a finite ``(S, L, D)`` float64 array (``(S, L)`` means ``D = 1``)."""
    array = as_float_array(draws, "draws")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(
            "draws must have shape (n_sims, n_draws, n_params) or (n_sims, n_draws), "
            f"got shape {array.shape}"
        )
    n_sims, n_draws, n_params = array.shape
    if n_sims < 1 or n_params < 1:
        raise ValueError(f"draws must not be empty, got shape {array.shape}")
    if n_draws < min_draws:
        raise ValueError(f"draws needs at least {min_draws} draw(s) per data set (axis 1), got {n_draws}")
    check_finite(array, "draws")
    return array


def as_truth(truth: Any, n_sims: int, n_params: int) -> np.ndarray:
    """``truth`` as a finite ``(S, D)`` float64 array matching ``draws``."""
    array = as_float_array(truth, "truth")
    if array.ndim == 1 and n_params == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(
            f"truth must have shape (n_sims, n_params) = ({n_sims}, {n_params}), got shape {array.shape}"
        )
    if array.shape[0] != n_sims:
        raise ValueError(
            f"shape mismatch: draws has {n_sims} data sets (axis 0) but truth has {array.shape[0]} rows"
        )
    if array.shape[1] != n_params:
        raise ValueError(
            f"shape mismatch: draws has {n_params} parameters (last axis) but truth has {array.shape[1]} columns"
        )
    check_finite(array, "truth")
    return array


def as_draws_truth(draws: Any, truth: Any, *, min_draws: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(draws, truth)`` with shapes ``(S, L, D)`` and ``(S, D)``."""
    d = as_draws(draws, min_draws=min_draws)
    return d, as_truth(truth, d.shape[0], d.shape[2])


def names_for(parameter_names: Sequence[str] | None, n_params: int) -> list[str]:
    """Parameter names, defaulting to ``theta[0], theta[1], ...``; checks the count."""
    if parameter_names is None:
        return [f"theta[{i}]" for i in range(n_params)]
    if isinstance(parameter_names, str):
        raise TypeError("parameter_names must be a sequence of strings, not a single string")
    names = [str(name) for name in parameter_names]
    if len(names) != n_params:
        raise ValueError(f"parameter_names has {len(names)} name(s) but there are {n_params} parameters")
    return names


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """``alpha`` as a float strictly inside (0, 1)."""
    try:
        value = float(alpha)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a number in (0, 1), got {alpha!r}") from error
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value}")
    return value


def check_levels(levels: Any) -> np.ndarray:
    """Credible levels as a 1-D float array with every entry in (0, 1)."""
    array = as_float_array(levels, "levels").reshape(-1)
    if array.size == 0:
        raise ValueError("levels must contain at least one credible level")
    check_finite(array, "levels")
    if np.any(array <= 0.0) or np.any(array >= 1.0):
        raise ValueError(f"levels must lie strictly between 0 and 1, got {array.tolist()}")
    return array


def positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int >= minimum`` (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)
