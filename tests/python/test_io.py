"""save/load: a round trip for every amortizer, and clear refusals of foreign or incompatible files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from amortbayes import PosteriorAmortizer, load, save
from amortbayes.models import ConjugateGaussian, GaussianLinearRegression, TwoMoons
from conftest import tiny_settings


@pytest.mark.parametrize("model", [ConjugateGaussian(dim=3), GaussianLinearRegression(), TwoMoons()])
def test_round_trip_gives_identical_densities_and_draws(tmp_path, model):
    amortizer = PosteriorAmortizer(model, tiny_settings(summary="set_transformer"))
    batch = model.simulate(4)
    amortizer.adapt(batch)
    save(amortizer, tmp_path / "fit")
    meta = json.loads((tmp_path / "fit" / "config.json").read_text())
    assert meta["amortbayes_version"] and meta["class"] == "PosteriorAmortizer"
    loaded = load(tmp_path / "fit", model=model)
    data = {"x": batch["x"], "mask": batch["mask"]}
    theta = batch["theta_global"].numpy()
    np.testing.assert_allclose(loaded.log_prob(theta, data), amortizer.log_prob(theta, data), rtol=1e-6)
    np.testing.assert_array_equal(loaded.sample_array(data, 5, seed=1), amortizer.sample_array(data, 5, seed=1))
    assert loaded.info == amortizer.info


def test_loading_for_another_model_is_refused(tmp_path):
    save(PosteriorAmortizer(ConjugateGaussian(), tiny_settings()), tmp_path)
    with pytest.raises(ValueError, match="written for model 'conjugate_gaussian', not for 'two_moons'"):
        load(tmp_path, model=TwoMoons())
    with pytest.raises(ValueError, match="with parameter_names"):
        load(tmp_path, model=ConjugateGaussian(dim=3))
    with pytest.raises(ValueError, match="with config"):
        load(tmp_path, model=ConjugateGaussian(noise_sd=2.0))


def test_incompatible_or_broken_files_are_refused(tmp_path):
    save(PosteriorAmortizer(ConjugateGaussian(), tiny_settings()), tmp_path)
    cfg = tmp_path / "config.json"
    meta = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({**meta, "format_version": 99, "amortbayes_version": "9.0"}))
    with pytest.raises(ValueError, match="file format 99 .*amortbayes 9.0.*retrain"):
        load(tmp_path)
    cfg.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load(tmp_path)
    with pytest.raises(ValueError, match="not a saved amortizer"):
        load(tmp_path / "missing")
    # weights that do not fit the configuration
    other = tmp_path / "other"
    save(PosteriorAmortizer(ConjugateGaussian(dim=3), tiny_settings()), other)
    cfg.write_text(json.dumps(meta))
    (tmp_path / "weights.pt").write_bytes((other / "weights.pt").read_bytes())
    with pytest.raises(ValueError, match="do not match its config.json"):
        load(tmp_path)
