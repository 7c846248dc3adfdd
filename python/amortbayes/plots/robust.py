"""Robustness figures: attacked-posterior KL and coverage over radii, and the accuracy-robustness trade-off."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from amortbayes.plots._base import _BAND, _MAIN, _REFERENCE, PathLike, _finish, _panels

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_robustness(report: Any, path: PathLike | None = None) -> Figure:
    """Left: KL between clean and attacked posteriors against the radius (median, 10-90 % band).
    Right: expected coverage of the attacked posteriors against the nominal level, one line per radius.

    Args:
        report: a :class:`~amortbayes.robust.report.RobustnessReport`.
        path: where to save a PNG, if given.
    """
    kl, cov = getattr(report, "kl", None), getattr(report, "coverage", None)
    if not isinstance(kl, pd.DataFrame) or not isinstance(cov, pd.DataFrame):
        raise TypeError("plot_robustness takes a RobustnessReport (amortbayes.robust.robustness_report)")
    fig, (left, right) = _panels(2, width=3.6, height=3.0)
    by = kl.groupby("eps")["kl"]
    eps = np.asarray(sorted(kl["eps"].unique()), dtype=float)
    left.fill_between(eps, by.quantile(0.1).to_numpy(), by.quantile(0.9).to_numpy(), color=_BAND, alpha=0.5,
                      label="10-90 %")
    left.plot(eps, by.median().to_numpy(), "o-", color=_MAIN, label="median")
    left.set_xlabel("radius eps (standardized units)")
    left.set_ylabel("KL(clean || attacked)")
    left.legend(fontsize=7, frameon=False)
    right.plot([0, 1], [0, 1], "--", color=_REFERENCE, lw=1, label="nominal")
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    for k, (e, frame) in enumerate(cov.groupby("eps")):
        curve = frame.groupby("level")["coverage"].mean()
        colour = cmap(0.85 * k / max(1, len(eps) - 1))
        right.plot(curve.index, curve.to_numpy(), color=colour, label="clean" if e == 0 else f"eps {e:g}")
    right.set_xlabel("credible level")
    right.set_ylabel("expected coverage (attacked)")
    right.set_xlim(0, 1)
    right.set_ylim(0, 1)
    right.legend(fontsize=7, frameon=False)
    return _finish(fig, path)


def plot_robustness_tradeoff(frame: pd.DataFrame, path: PathLike | None = None) -> Figure:
    """Held-out NLL (accuracy) against attacked KL (robustness), one point per amortizer, labelled by beta.

    Args:
        frame: :func:`~amortbayes.robust.report.robustness_tradeoff`'s output.
        path: where to save a PNG, if given.
    """
    missing = [c for c in ("nll", "kl_mean", "beta") if c not in getattr(frame, "columns", [])]
    if missing:
        raise ValueError(f"plot_robustness_tradeoff needs the columns {missing} (robustness_tradeoff's output)")
    fig, (ax,) = _panels(1, width=3.8, height=3.2)
    ax.plot(frame["nll"], frame["kl_mean"], "o-", color=_MAIN)
    for _, row in frame.iterrows():
        ax.annotate(f"beta={row['beta']:g}", (row["nll"], row["kl_mean"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xlabel("held-out NLL (lower: more accurate)")
    ax.set_ylabel("attacked KL (lower: more robust)")
    return _finish(fig, path)
