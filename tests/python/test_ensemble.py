"""Deep ensembles: mixture draws, save/load, and member disagreement that flags misspecified data."""

from __future__ import annotations

import numpy as np
import pytest

from amortbayes import TrainSettings, fit, load, save
from amortbayes.amortizers import ApproximatorGapWarning, EnsembleAmortizer, EnsembleSettings
from amortbayes.models import ConjugateGaussian, simulated_data_sets


@pytest.fixture(scope="module")
def ensemble():
    model = ConjugateGaussian(dim=1, n_obs=(10, 30))
    ens = EnsembleAmortizer(model, EnsembleSettings(members=3))
    fit(ens, model, settings=TrainSettings(epochs=2, iterations_per_epoch=60), progress=False, seed=0)
    return model, ens


def test_members_differ_and_the_mixture_pools_them(ensemble, tmp_path):
    model, ens = ensemble
    x = simulated_data_sets(model, 1, seed=1)[0][1]
    members = ens.member_draws(x, 3000, seed=0)
    assert members.shape == (3, 3000, 1)
    assert not np.allclose(members[0], members[1])  # different initialisations
    mixture = ens.sample_array(x, 6000, seed=0)
    assert mixture.shape == (6000, 1)
    assert mixture.mean() == pytest.approx(members.mean(), abs=0.03)
    assert ens.sample(x, 10).shape == (10, 1)
    loaded = load(save(ens, tmp_path / "ens"), model=model)
    assert np.allclose(loaded.sample_array(x, 100, seed=4), ens.sample_array(x, 100, seed=4))
    assert int(loaded.reference_size) == int(ens.reference_size) >= 20


def test_disagreement_is_far_higher_on_data_the_simulator_cannot_make(ensemble):
    """Fixed seeds; well-specified data sit among the simulations' scores, noise SD 5 data far above them."""
    model, ens = ensemble
    good = ens.disagreement([x for _, x in simulated_data_sets(model, 12, seed=3)])
    wide = ConjugateGaussian(dim=1, n_obs=(10, 30), noise_sd=5.0)
    with pytest.warns(UserWarning):
        bad = ens.disagreement([x for _, x in simulated_data_sets(wide, 12, seed=3)])
    assert bad["score"].median() > 20 * good["score"].median()
    assert good["flagged"].mean() <= 0.25 and bad["flagged"].mean() >= 0.75
    with pytest.warns(ApproximatorGapWarning, match="members disagree"):
        ens.check(simulated_data_sets(wide, 1, seed=9)[0][1])


def test_an_ensemble_needs_two_members():
    with pytest.raises(ValueError, match="at least 2 members"):
        EnsembleSettings(members=1)
