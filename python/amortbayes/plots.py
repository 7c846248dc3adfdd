"""Matplotlib figures for every diagnostic in :mod:`amortbayes.diagnostics`.

Every function takes the same inputs as the diagnostic it draws (plus ``parameter_names``)
and an optional ``path``; it returns a :class:`matplotlib.figure.Figure` and, when ``path``
is given, also saves it there as a PNG at 120 dpi.  Figures are built with
:class:`matplotlib.figure.Figure` directly, not through ``pyplot``: no backend is selected,
no global figure state is touched and nothing happens at import time, so the functions are
safe in scripts, notebooks (the returned figure displays itself) and through reticulate.

- :func:`plot_sbc_ecdf`: ECDF difference of SBC ranks inside the simultaneous band
  (Säilynoja, Bürkner & Vehtari 2022); a failing parameter gets a red title.
- :func:`plot_sbc_histogram`: SBC rank histogram with pointwise binomial bands (Talts et
  al. 2018).
- :func:`plot_recovery`: posterior mean ± sd against the truth, identity line, R².
- :func:`plot_z_score_contraction`: posterior z-score against contraction (Schad et al. 2021).
- :func:`plot_coverage`: empirical against nominal coverage of central intervals.
- :func:`plot_loss`: training and validation loss per epoch.
- :func:`plot_posterior_pairs`: pair plot of draws, optionally over reference draws.
- :func:`plot_group_intervals`: forest plot of group-level parameters against a reference, with pooling factors.
- :func:`plot_logo`: leave-one-group-out ELPD per group for one or two models, with
  ``elpd_diff`` and its SE (Habermann et al. 2024, Figure 9).
- :func:`plot_sensitivity_sweep`: posterior mean and 90 % interval of each parameter against a
  context (a prior or likelihood power, a modelling choice).

References:
    Talts, Betancourt, Simpson, Vehtari & Gelman (2018). Validating Bayesian inference
    algorithms with simulation-based calibration. arXiv:1804.06788.

    Säilynoja, Bürkner & Vehtari (2022). Graphical test for discrete uniformity and its
    applications in goodness-of-fit evaluation and multiple sample comparison.
    Statistics and Computing 32, 32.

    Schad, Betancourt & Vasishth (2021). Toward a principled Bayesian workflow in
    cognitive science. Psychological Methods 26(1), 103-126.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = plot_sbc_ecdf(rng.normal(size=(100, 50, 2)), rng.normal(size=(100, 2)))
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from amortbayes.diagnostics import (
    elpd_compare,
    expected_coverage,
    posterior_contraction,
    posterior_z_scores,
    recovery,
    sbc_check_ranks,
    sbc_ecdf_bands,
    sbc_ecdf_diff,
    sbc_ranks,
)
from amortbayes.diagnostics._validation import as_draws_truth, as_float_array, check_alpha, check_finite, names_for
from amortbayes.diagnostics.calibration import CALIBRATION_GRID

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "plot_sbc_ecdf",
    "plot_sbc_histogram",
    "plot_recovery",
    "plot_z_score_contraction",
    "plot_coverage",
    "plot_loss",
    "plot_posterior_pairs",
    "plot_group_intervals",
    "plot_logo",
]

PathLike = str | os.PathLike[str]

_DPI = 120
_MAIN = "#1f4e79"
_REFERENCE = "#d95f02"
_BAND = "#b0b0b0"


def _panels(n: int, width: float = 3.2, height: float = 2.8) -> tuple[Figure, list[Axes]]:
    """A figure with ``n`` panels on a grid of at most four columns."""
    from matplotlib.figure import Figure

    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(cols * width, rows * height), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).reshape(-1))
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def _finish(fig: Figure, path: PathLike | None) -> Figure:
    if path is not None:
        fig.savefig(os.fspath(path), dpi=_DPI, format="png")
    return fig


def plot_sbc_ecdf(
    draws: np.ndarray,
    truth: np.ndarray,
    parameter_names: Sequence[str] | None = None,
    alpha: float = 0.01,
    path: PathLike | None = None,
) -> Figure:
    """SBC ECDF difference ``F_hat(z) - z`` per parameter inside its simultaneous band.

    Args:
        draws: Posterior draws, shape ``(S, L, D)`` (or ``(S, L)``).
        truth: True values, shape ``(S, D)`` (or ``(S,)``).
        parameter_names: ``D`` names; default ``theta[0], ...``.
        alpha: Level of the simultaneous ``1 - alpha`` band (see :func:`~amortbayes.diagnostics.sbc_check`).
        path: Where to save a PNG, if given.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> fig = plot_sbc_ecdf(rng.normal(size=(100, 50)), rng.normal(size=100))
    """
    ranks = sbc_ranks(draws, truth)
    n_sims, n_params = ranks.shape
    n_draws = np.shape(draws)[1]
    names = names_for(parameter_names, n_params)
    band = sbc_ecdf_bands(n_sims, n_draws, alpha=alpha)
    diff = sbc_ecdf_diff(ranks, n_draws, band.z)
    passed = sbc_check_ranks(ranks, n_draws, names, alpha)["passed"].to_numpy()
    fig, axes = _panels(n_params)
    for j, ax in enumerate(axes):
        ax.fill_between(band.z, band.lower, band.upper, color=_BAND, alpha=0.5, lw=0, label=f"{1 - alpha:.0%} band")
        ax.axhline(0.0, color="black", lw=0.6)
        ax.plot(band.z, diff[:, j], color=_MAIN if passed[j] else "red", lw=1.2)
        ax.set_title(names[j] + ("" if passed[j] else " (fails SBC)"), color="black" if passed[j] else "red")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("fractional rank z")
        ax.set_ylabel("ECDF difference")
    axes[0].legend(loc="lower right", fontsize="small", frameon=False)
    return _finish(fig, path)


def _default_bins(n_sims: int, n_draws: int) -> int:
    """About ``S / 10`` bins (5 to 50), preferring a divisor of ``L + 1`` (equal-width bins)."""
    target = min(n_draws + 1, max(5, n_sims // 10), 50)
    divisors = [b for b in range(max(1, target // 2), min(n_draws + 1, 2 * target) + 1) if (n_draws + 1) % b == 0]
    return min(divisors, key=lambda b: abs(b - target)) if divisors else target


def plot_sbc_histogram(
    draws: np.ndarray,
    truth: np.ndarray,
    parameter_names: Sequence[str] | None = None,
    bins: int | None = None,
    alpha: float = 0.01,
    path: PathLike | None = None,
) -> Figure:
    """Histogram of SBC ranks with a pointwise ``1 - alpha`` binomial band per bin.

    Bins are unions of whole ranks, so each bin's count is ``Binomial(S, p_b)`` under
    uniformity with ``p_b`` the share of the ``L + 1`` ranks it covers.

    Args:
        draws: Posterior draws, shape ``(S, L, D)`` (or ``(S, L)``).
        truth: True values, shape ``(S, D)`` (or ``(S,)``).
        parameter_names: ``D`` names; default ``theta[0], ...``.
        bins: Number of bins; default about ``S / 10`` (5 to 50), a divisor of ``L + 1`` if one is near.
        alpha: Level of the pointwise band.
        path: Where to save a PNG, if given.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> fig = plot_sbc_histogram(rng.normal(size=(100, 50)), rng.normal(size=100))
    """
    ranks = sbc_ranks(draws, truth)
    n_sims, n_params = ranks.shape
    n_draws = np.shape(draws)[1]
    names = names_for(parameter_names, n_params)
    alpha = check_alpha(alpha)
    if bins is None:
        bins = _default_bins(n_sims, n_draws)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    edges = np.unique(np.round(np.linspace(0, n_draws + 1, min(int(bins), n_draws + 1) + 1))) - 0.5
    share = np.diff(edges) / (n_draws + 1)
    low = stats.binom.ppf(alpha / 2, n_sims, share)
    high = stats.binom.ppf(1 - alpha / 2, n_sims, share)
    fig, axes = _panels(n_params)
    for j, ax in enumerate(axes):
        counts, _ = np.histogram(ranks[:, j], bins=edges)
        ax.fill_between(edges, np.append(low, low[-1]), np.append(high, high[-1]), step="post", color=_BAND, alpha=0.5, lw=0)
        ax.stairs(counts, edges, color=_MAIN, fill=False, lw=1.2)
        ax.set_title(names[j])
        ax.set_xlabel("rank")
        ax.set_ylabel("count")
    return _finish(fig, path)


def plot_recovery(
    draws: np.ndarray,
    truth: np.ndarray,
    parameter_names: Sequence[str] | None = None,
    path: PathLike | None = None,
) -> Figure:
    """Posterior mean ± one posterior sd against the true value, with the identity line.

    Args:
        draws: Posterior draws, shape ``(S, L, D)`` (or ``(S, L)``).
        truth: True values, shape ``(S, D)`` (or ``(S,)``).
        parameter_names: ``D`` names; default ``theta[0], ...``.
        path: Where to save a PNG, if given.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> t = rng.normal(size=(50, 1))
        >>> fig = plot_recovery(t[:, None, :] + 0.1 * rng.normal(size=(50, 20, 1)), t)
    """
    d, t = as_draws_truth(draws, truth)
    names = names_for(parameter_names, d.shape[2])
    table = recovery(d, t, names)
    mean, sd = d.mean(axis=1), d.std(axis=1)
    fig, axes = _panels(d.shape[2])
    for j, ax in enumerate(axes):
        ax.errorbar(t[:, j], mean[:, j], yerr=sd[:, j], fmt="o", ms=2.5, color=_MAIN, ecolor=_MAIN, elinewidth=0.6, alpha=0.6)
        lo = min(t[:, j].min(), (mean[:, j] - sd[:, j]).min())
        hi = max(t[:, j].max(), (mean[:, j] + sd[:, j]).max())
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--")
        ax.text(0.04, 0.96, f"$R^2$ = {table['r2'].iloc[j]:.3f}", transform=ax.transAxes, va="top")
        ax.set_title(names[j])
        ax.set_xlabel("true value")
        ax.set_ylabel("posterior mean ± sd")
    return _finish(fig, path)


def plot_z_score_contraction(
    draws: np.ndarray,
    truth: np.ndarray,
    prior_sd: float | np.ndarray,
    parameter_names: Sequence[str] | None = None,
    path: PathLike | None = None,
) -> Figure:
    """Posterior z-score against posterior contraction, one point per data set.

    Good amortized posteriors sit at contraction near 1 with z-scores mostly within ±2.

    Args:
        draws: Posterior draws, shape ``(S, L, D)`` (or ``(S, L)``), ``L >= 2``.
        truth: True values, shape ``(S, D)`` (or ``(S,)``).
        prior_sd: Prior standard deviation, scalar or ``(D,)``.
        parameter_names: ``D`` names; default ``theta[0], ...``.
        path: Where to save a PNG, if given.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> fig = plot_z_score_contraction(rng.normal(size=(50, 20)), rng.normal(size=50), 1.0)
    """
    z = posterior_z_scores(draws, truth)
    contraction = posterior_contraction(draws, prior_sd)
    names = names_for(parameter_names, z.shape[1])
    fig, axes = _panels(z.shape[1])
    for j, ax in enumerate(axes):
        ax.scatter(contraction[:, j], z[:, j], s=6, color=_MAIN, alpha=0.5, lw=0)
        for level in (-2.0, 0.0, 2.0):
            ax.axhline(level, color="black", lw=0.6, ls="-" if level == 0 else ":")
        ax.set_xlim(min(-0.05, contraction[:, j].min() - 0.05), 1.05)
        ax.set_title(names[j])
        ax.set_xlabel("posterior contraction")
        ax.set_ylabel("posterior z-score")
    return _finish(fig, path)


def plot_coverage(
    draws: np.ndarray,
    truth: np.ndarray,
    levels: Sequence[float] = CALIBRATION_GRID,
    parameter_names: Sequence[str] | None = None,
    alpha: float = 0.05,
    path: PathLike | None = None,
) -> Figure:
    """Empirical coverage of central credible intervals against their nominal level.

    The grey band is the pointwise ``1 - alpha`` binomial range of the coverage of a
    calibrated posterior over ``S`` data sets; points below the diagonal mean over-confidence.

    Args:
        draws: Posterior draws, shape ``(S, L, D)`` (or ``(S, L)``), ``L >= 2``.
        truth: True values, shape ``(S, D)`` (or ``(S,)``).
        levels: Credible levels; default ``0.01, ..., 0.99``.
        parameter_names: ``D`` names; default ``theta[0], ...``.
        alpha: Level of the pointwise binomial band.
        path: Where to save a PNG, if given.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> fig = plot_coverage(rng.normal(size=(100, 50)), rng.normal(size=100))
    """
    d, t = as_draws_truth(draws, truth, min_draws=2)
    names = names_for(parameter_names, d.shape[2])
    alpha = check_alpha(alpha)
    table = expected_coverage(d, t, levels, names)
    grid = np.sort(np.unique(table["level"].to_numpy()))
    n_sims = d.shape[0]
    low = stats.binom.ppf(alpha / 2, n_sims, grid) / n_sims
    high = stats.binom.ppf(1 - alpha / 2, n_sims, grid) / n_sims
    fig, axes = _panels(len(names))
    for name, ax in zip(names, axes):
        rows = table[table["parameter"] == name].sort_values("level")
        ax.fill_between(grid, low, high, color=_BAND, alpha=0.5, lw=0)
        ax.plot([0, 1], [0, 1], color="black", lw=0.8, ls="--")
        ax.plot(rows["level"], rows["coverage"], color=_MAIN, marker="o" if len(rows) < 20 else None, ms=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(name)
        ax.set_xlabel("nominal level")
        ax.set_ylabel("empirical coverage")
    return _finish(fig, path)


def plot_loss(history: pd.DataFrame, path: PathLike | None = None) -> Figure:
    """Training (and, if present, validation) loss per epoch, with the kept epoch marked.

    Args:
        history: Data frame with columns ``epoch``, ``train_loss`` and optionally ``val_loss``
            (NaN where no validation loss was computed) and ``kept`` (the epoch whose
            weights the amortizer ends with, as :func:`amortbayes.fit` returns it).
        path: Where to save a PNG, if given.

    Example:
        >>> h = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.2, 1.8]})
        >>> fig = plot_loss(h)
    """
    if not isinstance(history, pd.DataFrame):
        raise TypeError(f"history must be a pandas DataFrame, got {type(history).__name__}")
    missing = [c for c in ("epoch", "train_loss") if c not in history.columns]
    if missing:
        raise ValueError(f"history is missing column(s) {missing}; it needs epoch, train_loss and optionally val_loss")
    if len(history) == 0:
        raise ValueError("history has no rows")
    fig, axes = _panels(1, width=5.0, height=3.4)
    ax = axes[0]
    ax.plot(history["epoch"], history["train_loss"], color=_MAIN, marker=".", label="train")
    if "val_loss" in history.columns and history["val_loss"].notna().any():
        ax.plot(history["epoch"], history["val_loss"], color=_REFERENCE, marker=".", label="validation")
    if "kept" in history.columns and history["kept"].astype(bool).any():
        kept = history[history["kept"].astype(bool)].iloc[0]
        ax.axvline(kept["epoch"], color="0.5", linestyle=":", linewidth=1.0,
                   label=f"kept (epoch {int(kept['epoch'])})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(frameon=False)
    return _finish(fig, path)


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
