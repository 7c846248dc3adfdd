"""Diagnostics of amortized posteriors: pure functions of draws and true values.

All functions take posterior ``draws`` of shape ``(S, L, D)`` (``S`` simulated data sets,
``L`` draws each, ``D`` parameters) and, where relevant, ``truth`` of shape ``(S, D)``;
``(S, L)`` and ``(S,)`` are accepted for one parameter.  They return numpy arrays or
pandas data frames and never plot (see :mod:`amortbayes.plots`).

- :mod:`.sbc`: simulation-based calibration with simultaneous ECDF bands.
- :mod:`.recovery`: R², normalized RMSE and correlation of posterior means vs truth.
- :mod:`.calibration`: z-scores, contraction, expected coverage, calibration error.
- :mod:`.c2st`: classifier two-sample test against reference draws.
- :mod:`.multilevel`: pooling factors, one-group-per-data-set SBC inputs, ELPD differences,
  PSIS leave-one-group-out from full-data draws, weighted quantiles.
- :mod:`.importance`: Pareto k-hat and effective sample size of importance weights.

Example:
    >>> import numpy as np
    >>> from amortbayes.diagnostics import sbc_check
    >>> rng = np.random.default_rng(0)
    >>> sbc_check(rng.normal(size=(100, 50, 1)), rng.normal(size=(100, 1)))["passed"].tolist()
    [True]
"""

from amortbayes.diagnostics.c2st import c2st
from amortbayes.diagnostics.calibration import (
    calibration_error,
    expected_coverage,
    posterior_contraction,
    posterior_z_scores,
)
from amortbayes.diagnostics.importance import (
    effective_sample_size,
    importance_diagnostics,
    pareto_khat,
    pareto_smooth,
    tempering_exponent,
)
from amortbayes.diagnostics.multilevel import (
    elpd_compare,
    log_mean_exp,
    one_group_per_data_set,
    pooling_factor,
    elpd_summary,
    psis_logo,
    psis_loo,
    weighted_quantiles,
)
from amortbayes.diagnostics.recovery import recovery
from amortbayes.diagnostics.sbc import (
    SBCBands,
    sbc_check,
    sbc_check_ranks,
    sbc_ecdf_bands,
    sbc_ecdf_diff,
    sbc_ranks,
)

__all__ = [
    "SBCBands",
    "c2st",
    "effective_sample_size",
    "elpd_compare",
    "importance_diagnostics",
    "log_mean_exp",
    "one_group_per_data_set",
    "pareto_khat",
    "pareto_smooth",
    "pooling_factor",
    "elpd_summary",
    "psis_logo",
    "psis_loo",
    "calibration_error",
    "expected_coverage",
    "posterior_contraction",
    "posterior_z_scores",
    "recovery",
    "sbc_check",
    "sbc_check_ranks",
    "sbc_ecdf_bands",
    "sbc_ecdf_diff",
    "sbc_ranks",
    "tempering_exponent",
    "weighted_quantiles",
]
