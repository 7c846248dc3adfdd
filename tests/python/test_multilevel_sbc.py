"""Slow: SBC at both levels for each built-in two-level model after a real training budget.

J and N_j are drawn over the whole trained ranges; 200 simulated data sets, 99 % simultaneous
bands; local parameters use one random group per data set so ranks are independent.
Run with ``make test-slow`` (minutes per model on 2 CPU cores).
"""

from __future__ import annotations

import pytest
import torch

from amortbayes import MultilevelAmortizer, MultilevelSettings, TrainSettings, fit
from amortbayes.amortizers.multilevel import default_settings
from amortbayes.diagnostics import one_group_per_data_set, sbc_check
from amortbayes.models import AR1Multilevel, HierarchicalDDM, HierarchicalLinear

CASES = {
    "hierarchical_linear": (HierarchicalLinear(), default_settings(HierarchicalLinear()), TrainSettings(
        epochs=40, iterations_per_epoch=250, batch_size=32, learning_rate=3e-3)),  # benchmarks/multilevel.py
    "ar1_multilevel": (AR1Multilevel(), MultilevelSettings(group_summary="recurrent"), TrainSettings(
        epochs=30, iterations_per_epoch=200, batch_size=32)),
    "ddm_shared_bias": (HierarchicalDDM(), default_settings(HierarchicalDDM()), TrainSettings(
        epochs=20, iterations_per_epoch=150, batch_size=32, learning_rate=5e-4)),
    # log_tau failed SBC until draws were bounded by the fastest response (data-bounded support)
    "ddm_subject_bias": (HierarchicalDDM(bias="subject"), default_settings(HierarchicalDDM(bias="subject")),
                         TrainSettings(epochs=20, iterations_per_epoch=150, batch_size=32, learning_rate=5e-4)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_sbc_passes_for_global_and_local_parameters(name):
    model, net, train = CASES[name]
    amortizer = MultilevelAmortizer(model, net)
    fit(amortizer, model, settings=train, progress=False, seed=0)
    batch = model.simulate(200, torch.Generator().manual_seed(2024))
    draws = amortizer.sample_draws(batch, 200, seed=1)
    glob = sbc_check(draws.global_draws, batch["theta_global"].numpy(), model.parameter_names)
    local, truth = one_group_per_data_set(draws.local_draws, batch["theta_local"].numpy(), batch["group_mask"].numpy())
    loc = sbc_check(local, truth, model.local_parameter_names)
    assert glob["passed"].all(), glob
    assert loc["passed"].all(), loc
