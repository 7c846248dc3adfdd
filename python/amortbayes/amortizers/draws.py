"""Posterior draws of a two-level model: global draws and every group's, with their tables and summaries."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from amortbayes.amortizers.base import summarize_draws


@dataclasses.dataclass(frozen=True)
class MultilevelDraws:
    """Posterior draws of one or many data sets.

    Attributes:
        global_draws: ``(B, n, G)`` hyper- and shared parameters.
        local_draws: ``(B, n, J, L)`` group parameters (NaN for padded groups).
        parameter_names, local_parameter_names: column names.
        group_labels: per data set, the labels of its groups.
        diagnostics: for importance-sampled draws (:func:`amortbayes.inference.importance_draws`),
            ``pareto_k``, ``ess``, ``ess_fraction``, ``proposals``, ``rounds``,
            ``pareto_k_by_round`` (a list) and ``likelihood_mc_sd`` of the importance weights.
    """

    global_draws: np.ndarray
    local_draws: np.ndarray
    parameter_names: tuple[str, ...]
    local_parameter_names: tuple[str, ...]
    group_labels: tuple[tuple[str, ...], ...]
    diagnostics: dict[str, Any] | None = None

    def to_frame(self, dataset: int = 0) -> pd.DataFrame:
        """Wide DataFrame of one data set: global columns then ``name[group]`` local columns."""
        glob = pd.DataFrame(self.global_draws[dataset], columns=list(self.parameter_names))
        labels = self.group_labels[dataset]
        cols = {}
        for li, lname in enumerate(self.local_parameter_names):
            for j, lab in enumerate(labels):
                cols[f"{lname}[{lab}]"] = self.local_draws[dataset, :, j, li]
        return pd.concat([glob, pd.DataFrame(cols)], axis=1)

    def to_long(self, dataset: int = 0) -> pd.DataFrame:
        """Long DataFrame of one data set's local draws: ``draw, group, parameter, value``."""
        labels = self.group_labels[dataset]
        loc = self.local_draws[dataset][:, : len(labels)]  # (n, J, L)
        n, j, l_ = loc.shape
        return pd.DataFrame(
            {
                "draw": np.repeat(np.arange(n), j * l_),
                "group": np.tile(np.repeat(np.asarray(labels, dtype=object), l_), n),
                "parameter": np.tile(np.asarray(self.local_parameter_names, dtype=object), n * j),
                "value": loc.reshape(-1),
            }
        )

    def summary(self, dataset: int = 0) -> pd.DataFrame:
        """Mean, sd and quantiles of every global and local parameter."""
        return summarize_draws(self.to_frame(dataset))
