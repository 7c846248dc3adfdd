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
- :func:`plot_robustness`: attacked-posterior KL against the radius and expected coverage of
  attacked posteriors; :func:`plot_robustness_tradeoff`: NLL against attacked KL over beta.

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

from amortbayes.plots._base import PathLike
from amortbayes.plots.calibration import (
    plot_coverage,
    plot_recovery,
    plot_sbc_ecdf,
    plot_sbc_histogram,
    plot_z_score_contraction,
)
from amortbayes.plots.posterior import plot_group_intervals, plot_logo, plot_posterior_pairs, plot_sensitivity_sweep
from amortbayes.plots.robust import plot_robustness, plot_robustness_tradeoff
from amortbayes.plots.training import plot_loss

__all__ = [
    "PathLike",
    "plot_sbc_ecdf",
    "plot_sbc_histogram",
    "plot_recovery",
    "plot_z_score_contraction",
    "plot_coverage",
    "plot_loss",
    "plot_posterior_pairs",
    "plot_group_intervals",
    "plot_logo",
    "plot_sensitivity_sweep",
    "plot_robustness",
    "plot_robustness_tradeoff",
]
