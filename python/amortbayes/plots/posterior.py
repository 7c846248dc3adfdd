"""Posterior figures: pair plots, group intervals, leave-one-group-out ELPD, sensitivity sweeps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from amortbayes.diagnostics import elpd_compare
from amortbayes.diagnostics._validation import as_float_array, check_finite, names_for

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from amortbayes.plots._base import _BAND, _MAIN, _REFERENCE, PathLike, _finish, _panels


def _as_pair_draws(value: np.ndarray | pd.DataFrame, name: str) -> tuple[np.ndarray, list[str] | None]:
    columns = [str(c) for c in value.columns] if isinstance(value, pd.DataFrame) else None
    array = as_float_array(value.to_numpy() if isinstance(value, pd.DataFrame) else value, name)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n_draws, n_params), got shape {array.shape}")
    check_finite(array, name)
    return array, columns


def plot_posterior_pairs(
    draws: np.ndarray | pd.DataFrame,
    reference: np.ndarray | pd.DataFrame | None = None,
    parameter_names: Sequence[str] | None = None,
    path: PathLike | None = None,
    *,
    labels: tuple[str, str] = ("amortized", "reference"),
    max_points: int = 2000,
    seed: int = 0,
) -> Figure:
    """Pair plot of posterior draws for one data set, optionally over reference draws.

    Diagonal: histograms of each parameter; lower triangle: scatter plots of pairs.  The
    reference draws (exact or Stan) are drawn in another colour beneath.

    Args:
        draws: Draws of shape ``(L, D)`` or a data frame with one column per parameter.
        reference: Optional reference draws with the same ``D`` columns.
        parameter_names: ``D`` names; default the data frame's columns or ``theta[0], ...``.
        path: Where to save a PNG, if given.
        labels: Legend labels for ``draws`` and ``reference``.
        max_points: At most this many (randomly chosen) points per scatter, for speed.
        seed: Seed of that subsampling.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> fig = plot_posterior_pairs(rng.normal(size=(500, 3)), reference=rng.normal(size=(500, 3)))
        >>> len(fig.axes)
        6
    """
    x, columns = _as_pair_draws(draws, "draws")
    n_params = x.shape[1]
    names = names_for(parameter_names if parameter_names is not None else columns, n_params)
    ref = None
    if reference is not None:
        ref, _ = _as_pair_draws(reference, "reference")
        if ref.shape[1] != n_params:
            raise ValueError(f"shape mismatch: draws has {n_params} parameters but reference has {ref.shape[1]}")
    rng = np.random.default_rng(seed)

    def thin(a: np.ndarray) -> np.ndarray:
        return a if a.shape[0] <= max_points else a[rng.choice(a.shape[0], max_points, replace=False)]

    from matplotlib.figure import Figure

    size = max(2.0, min(2.6, 10.0 / n_params))
    fig = Figure(figsize=(size * n_params, size * n_params), layout="constrained")
    grid = fig.subplots(n_params, n_params, squeeze=False)
    x_thin, ref_thin = thin(x), (thin(ref) if ref is not None else None)
    for i in range(n_params):
        for j in range(n_params):
            ax = grid[i, j]
            if j > i:
                fig.delaxes(ax)
                continue
            if i == j:
                pooled = x[:, i] if ref is None else np.concatenate([x[:, i], ref[:, i]])
                edges = np.histogram_bin_edges(pooled, bins=30)
                if ref is not None:
                    ax.hist(ref[:, i], bins=edges, density=True, color=_REFERENCE, alpha=0.45, label=labels[1])
                ax.hist(x[:, i], bins=edges, density=True, histtype="step", color=_MAIN, lw=1.3, label=labels[0])
                ax.set_yticks([])
            else:
                if ref_thin is not None:
                    ax.scatter(ref_thin[:, j], ref_thin[:, i], s=3, color=_REFERENCE, alpha=0.3, lw=0)
                ax.scatter(x_thin[:, j], x_thin[:, i], s=3, color=_MAIN, alpha=0.3, lw=0)
            if i == n_params - 1:
                ax.set_xlabel(names[j])
            if j == 0 and i > 0:
                ax.set_ylabel(names[i])
    if ref is not None:
        grid[0, 0].legend(fontsize="small", frameon=False)
    return _finish(fig, path)


def plot_group_intervals(
    draws: pd.DataFrame,
    reference: pd.DataFrame | None = None,
    parameters: Sequence[str] | None = None,
    path: PathLike | None = None,
    *,
    labels: tuple[str, str] = ("amortized", "reference"),
    pooling: dict[str, tuple[np.ndarray, np.ndarray | None]] | None = None,
) -> Figure:
    """Forest plot of group-level parameters: median, 50 % and 95 % intervals per group.

    One panel per local parameter ``name`` with columns ``name[group]`` (the wide frames of
    :meth:`MultilevelDraws.to_frame` and of a Stan fit with the same names); reference
    intervals are drawn just below the amortized ones.  ``pooling`` maps a parameter to
    its pooling factors per group ``(amortized, reference or None)``, printed at the right
    margin (Gelman & Hill: 0 = no pooling, 1 = complete pooling).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> frame = pd.DataFrame(rng.normal(size=(400, 3)), columns=["r[a]", "r[b]", "r[c]"])
        >>> len(plot_group_intervals(frame, frame + 0.1).axes)
        1
    """
    if not isinstance(draws, pd.DataFrame):
        raise TypeError("plot_group_intervals takes the wide DataFrame of draws (columns name[group])")
    local = [c for c in draws.columns if isinstance(c, str) and c.endswith("]") and "[" in c]
    names = list(dict.fromkeys(c[: c.index("[")] for c in local)) if parameters is None else list(parameters)
    if not names:
        raise ValueError("no group-level columns of the form name[group] in the draws")
    fig, axes = _panels(len(names), width=4.0, height=max(2.8, 0.28 * sum(c.startswith(names[0] + "[") for c in local)))
    for ax, name in zip(axes, names):
        cols = [c for c in local if c.startswith(name + "[")]
        if not cols:
            raise ValueError(f"no columns {name}[group] in the draws")
        groups = [c[len(name) + 1 : -1] for c in cols]
        y = np.arange(len(cols))[::-1].astype(float)
        sets = [(draws, _MAIN, labels[0], 0.0)]
        if reference is not None:
            missing = [c for c in cols if c not in reference.columns]
            if missing:
                raise ValueError(f"reference draws lack the columns {missing[:3]}")
            sets.append((reference, _REFERENCE, labels[1], -0.3))
        for frame, colour, label, dy in sets:
            q = np.quantile(frame[cols].to_numpy(), [0.025, 0.25, 0.5, 0.75, 0.975], axis=0)
            ax.hlines(y + dy, q[0], q[4], color=colour, lw=1.0)
            ax.hlines(y + dy, q[1], q[3], color=colour, lw=3.0, label=label)
            ax.plot(q[2], y + dy, "o", color=colour, ms=3)
        if pooling and name in pooling:
            lam_a, lam_r = pooling[name]
            text = [f"{a:.2f}" + ("" if lam_r is None else f" / {r:.2f}") for a, r in
                    zip(lam_a, lam_r if lam_r is not None else [None] * len(lam_a))]
            for yi, t in zip(y, text):
                ax.annotate(t, (1.01, yi), xycoords=("axes fraction", "data"), va="center", fontsize="x-small")
            ax.set_title(f"{name}  (pooling factor" + (")" if lam_r is None else f" {labels[0]} / {labels[1]})"),
                         fontsize="small")
        else:
            ax.set_title(name, fontsize="small")
        ax.set_yticks(y, groups, fontsize="x-small")
        ax.legend(fontsize="x-small", frameon=False, loc="best")
    return _finish(fig, path)


def plot_logo(
    logo: pd.DataFrame,
    other: pd.DataFrame | None = None,
    path: PathLike | None = None,
    *,
    labels: tuple[str, str] = ("model a", "model b"),
) -> Figure:
    """Leave-one-group-out ELPD of every group, for one model or two on the same groups.

    Takes the frames of :meth:`MultilevelAmortizer.logo` (``group``, ``elpd`` and, when
    present, ``q10``/``q90``: the 80 % interval of the left-out group's log predictive
    density over its LOGO posterior).  Each group gets its ELPD as a point and the interval
    as a vertical line, ``other`` just to the right in another colour; with two models the
    title gives ``elpd_diff`` (``logo`` minus ``other``) and its standard error
    (:func:`amortbayes.diagnostics.elpd_compare`), as Figure 9 of Habermann et al. (2024).

    Example:
        >>> a = pd.DataFrame({"group": ["s1", "s2", "s3"], "elpd": [-10.0, -12.0, -9.0]})
        >>> fig = plot_logo(a, a.assign(elpd=a["elpd"] - 1), labels=("subject bias", "shared bias"))
        >>> fig.axes[0].get_title()
        'elpd_diff (subject bias - shared bias) = 3.0 ± 0.0'
    """
    frames = [logo] if other is None else [logo, other]
    for frame in frames:
        if not isinstance(frame, pd.DataFrame) or not {"group", "elpd"} <= set(frame.columns):
            raise TypeError("plot_logo takes the DataFrames of MultilevelAmortizer.logo() (columns group, elpd)")
    if other is not None and list(map(str, other["group"])) != list(map(str, logo["group"])):
        raise ValueError("the two LOGO frames must hold the same groups in the same order")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.0, 0.35 * len(logo) + 1.5), 3.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(logo), dtype=float)
    for frame, colour, label, dx in zip(frames, (_MAIN, _REFERENCE), labels, (-0.12, 0.12)):
        elpd = frame["elpd"].to_numpy(float)
        if {"q10", "q90"} <= set(frame.columns):
            ax.vlines(x + dx, frame["q10"].to_numpy(float), frame["q90"].to_numpy(float), color=colour, lw=1.5)
        ax.plot(x + dx, elpd, "o", color=colour, ms=4, label=label if other is not None else None)
    ax.set_xticks(x, [str(g) for g in logo["group"]], fontsize="x-small", rotation=90 if len(logo) > 20 else 0)
    ax.set_xlabel("left-out group")
    ax.set_ylabel("log p(x_k | x_-k)")
    if other is not None:
        cmp = elpd_compare(logo["elpd"].to_numpy(float), other["elpd"].to_numpy(float))
        ax.set_title(f"elpd_diff ({labels[0]} - {labels[1]}) = {cmp['elpd_diff'].item():.1f} ± "
                     f"{cmp['se_diff'].item():.1f}", fontsize="small")
        ax.legend(fontsize="x-small", frameon=False)
    else:
        ax.set_title(f"elpd_logo = {logo['elpd'].sum():.1f}", fontsize="small")
    return _finish(fig, path)


def plot_sensitivity_sweep(sweep: pd.DataFrame, context: str | None = None, path: PathLike | None = None) -> Figure:
    """Posterior summaries against one context: a panel per parameter, the mean as a line, the 90 % interval as a band.

    Takes the frame of :func:`amortbayes.sensitivity.sensitivity_sweep`; ``context`` is the
    column on the x axis (default: the first context column that varies).  A power is drawn
    on a log axis with the model as written (1) marked.

    Example:
        >>> s = pd.DataFrame({"alpha": [0.5, 1.0, 2.0] * 2, "variable": ["mu"] * 3 + ["sigma"] * 3,
        ...                   "mean": [1.0, 0.9, 0.8, 1.0, 1.0, 1.0], "sd": 0.1,
        ...                   "q5": [0.8, 0.7, 0.6, 0.8, 0.8, 0.8], "q95": [1.2, 1.1, 1.0, 1.2, 1.2, 1.2]})
        >>> [ax.get_title() for ax in plot_sensitivity_sweep(s).axes]
        ['mu', 'sigma']
    """
    needed = {"variable", "mean", "q5", "q95"}
    if not isinstance(sweep, pd.DataFrame) or not needed <= set(sweep.columns):
        raise TypeError("plot_sensitivity_sweep takes the DataFrame of sensitivity_sweep() (variable, mean, q5, q95)")
    candidates = [c for c in sweep.columns if c not in needed | {"sd", "q50"}]
    if context is None:
        varying = [c for c in candidates if sweep[c].nunique() > 1]
        if not varying:
            raise ValueError("no context varies in this sweep")
        context = varying[0]
    if context not in candidates:
        raise ValueError(f"unknown context column {context!r}; the sweep has {candidates}")
    variables = list(dict.fromkeys(sweep["variable"]))
    fig, axes = _panels(len(variables))
    numeric = pd.api.types.is_numeric_dtype(sweep[context])
    for ax, name in zip(axes, variables):
        part = sweep[sweep["variable"] == name].sort_values(context) if numeric else sweep[sweep["variable"] == name]
        x = part[context].to_numpy(float) if numeric else np.arange(len(part))
        ax.fill_between(x, part["q5"].to_numpy(float), part["q95"].to_numpy(float), color=_MAIN, alpha=0.2, lw=0)
        ax.plot(x, part["mean"].to_numpy(float), color=_MAIN)
        if numeric and (x > 0).all() and x.max() / x.min() > 1.5:
            ax.set_xscale("log")
            if x.min() <= 1 <= x.max():
                ax.axvline(1.0, color=_BAND, lw=1, ls="--")
        if not numeric:
            ax.set_xticks(x, [str(v) for v in part[context]], fontsize="x-small")
        ax.set_title(name, fontsize="small")
        ax.set_xlabel(context)
    return _finish(fig, path)
