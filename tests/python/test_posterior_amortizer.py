"""NPE against closed-form truth: posterior means/SDs, SBC both ways, log densities, named draws, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from amortbayes.diagnostics import sbc_check

HELD_OUT_SEED = 12345


def _held_out(model, n):
    batch = model.simulate(n, torch.Generator().manual_seed(HELD_OUT_SEED))
    return batch, {"x": batch["x"], "mask": batch["mask"]}


def test_training_reduces_loss_and_reports_history(trained_gaussian):
    _, history = trained_gaussian
    assert list(history.columns) == ["epoch", "train_loss", "fit_loss", "val_loss", "lr", "seconds", "skipped_batches", "best", "kept"]
    assert (history["skipped_batches"] == 0).all()
    assert history["epoch"].tolist() == list(range(1, 11))
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[:3].min()
    assert history["lr"].iloc[-1] < history["lr"].iloc[0] / 10  # cosine decay


def test_validation_loss_approaches_the_exact_posterior_entropy(trained_gaussian, gaussian_model):
    """The NPE loss is bounded below by E[-log p(theta | x)]; a trained amortizer gets close."""
    amortizer, _ = trained_gaussian
    batch, data = _held_out(gaussian_model, 2000)
    mean, sd = gaussian_model.posterior(batch["x"].numpy(), batch["mask"].numpy())
    theta = batch["theta_global"].numpy()
    exact = -(-0.5 * ((theta - mean) / sd) ** 2 - np.log(sd * np.sqrt(2 * np.pi))).sum(1).mean()
    with torch.no_grad():
        # loss() works on standardized parameters: undo the log-Jacobian to compare
        jacobian = amortizer.theta_map.log_abs_det(batch["theta_global"]).mean().item()
        amortized = amortizer.loss(batch).item() - jacobian
    assert exact - 0.02 < amortized < exact + 0.05


def test_posterior_matches_closed_form_on_held_out_data(trained_closed_form):
    amortizer, model = trained_closed_form
    batch, data = _held_out(model, 100)
    mean, sd = model.posterior(batch["x"].numpy(), batch["mask"].numpy())
    draws = amortizer.sample_array(data, 2000, seed=1)
    mean_err = np.abs(draws.mean(1) - mean) / sd
    sd_err = np.abs(draws.std(1) / sd - 1)
    # the bar: means within 0.1 posterior SD and SDs within 10 % (averaged over data sets)
    assert mean_err.mean() < 0.1, mean_err.mean(0)
    assert sd_err.mean() < 0.1, sd_err.mean(0)


def test_sbc_passes_for_the_trained_amortizer(trained_closed_form):
    amortizer, model = trained_closed_form
    batch, data = _held_out(model, 300)
    draws = amortizer.sample_array(data, 200, seed=2)
    result = sbc_check(draws, batch["theta_global"].numpy(), amortizer.info.parameter_names)
    assert result["passed"].all(), result


@pytest.mark.parametrize(
    "distort", ["shift", "overconfident", "underconfident"],
)
def test_sbc_fails_for_miscalibrated_versions_of_the_same_draws(trained_closed_form, distort):
    amortizer, model = trained_closed_form
    batch, data = _held_out(model, 300)
    draws = amortizer.sample_array(data, 200, seed=2)
    centre = draws.mean(1, keepdims=True)
    spread = draws.std(1, keepdims=True)
    if distort == "shift":
        bad = draws + 0.5 * spread
    elif distort == "overconfident":
        bad = centre + 0.5 * (draws - centre)
    else:
        bad = centre + 2.0 * (draws - centre)
    result = sbc_check(bad, batch["theta_global"].numpy(), amortizer.info.parameter_names)
    assert not result["passed"].any(), result


def test_log_prob_matches_closed_form_density(trained_gaussian, gaussian_model):
    amortizer, _ = trained_gaussian
    x = np.random.default_rng(3).normal(0.7, 1.0, size=(20, 2))
    mean, sd = gaussian_model.posterior(x)
    theta = mean + sd * np.array([[0.0, 0.0], [1.0, -1.0], [-0.5, 1.5]])
    exact = (-0.5 * ((theta - mean) / sd) ** 2 - np.log(sd * np.sqrt(2 * np.pi))).sum(1)
    approx = amortizer.log_prob(theta, x)
    assert approx.shape == (3,)
    # a wrong Jacobian or normalisation would be off by nats; training error is ~0.1-0.2 nats at 1 SD
    np.testing.assert_allclose(approx, exact, atol=0.3)


def test_log_prob_is_normalised(trained_gaussian):
    amortizer, _ = trained_gaussian
    x = np.random.default_rng(4).normal(-0.3, 1.0, size=(10, 2))
    draws = amortizer.sample_array(x, 4000, seed=5)
    lo, hi = draws.min(0) - 0.5, draws.max(0) + 0.5
    g = np.stack(np.meshgrid(*[np.linspace(lo[i], hi[i], 120) for i in range(2)]), -1).reshape(-1, 2)
    cell = np.prod((hi - lo) / 119)
    assert abs(np.exp(amortizer.log_prob(g, x)).sum() * cell - 1.0) < 0.03


def test_draws_come_back_named_for_one_or_many_data_sets(trained_gaussian):
    amortizer, _ = trained_gaussian
    one = amortizer.sample(np.zeros((10, 2)), 50, seed=0)
    assert isinstance(one, pd.DataFrame) and list(one.columns) == ["mu[1]", "mu[2]"] and len(one) == 50
    many = amortizer.sample([np.zeros((3, 2)), np.ones((12, 2))], 40, seed=0)
    assert list(many.columns) == ["dataset", "draw", "mu[1]", "mu[2]"] and len(many) == 80
    assert amortizer.sample_array(np.zeros((4, 10, 2)), 7).shape == (4, 7, 2)
    sub = amortizer.sample(np.zeros((10, 2)), 5, parameters=["mu[2]"])
    assert list(sub.columns) == ["mu[2]"]
    summary = amortizer.posterior_summary(np.zeros((10, 2)), 500)
    assert list(summary.index) == ["mu[1]", "mu[2]"] and {"mean", "sd", "q2.5", "q97.5"} <= set(summary.columns)


def test_sampling_is_reproducible_with_seed(trained_gaussian):
    amortizer, _ = trained_gaussian
    a = amortizer.sample_array(np.zeros((5, 2)), 10, seed=9)
    b = amortizer.sample_array(np.zeros((5, 2)), 10, seed=9)
    np.testing.assert_array_equal(a, b)


def test_ragged_batch_gives_the_same_posterior_as_one_at_a_time(trained_gaussian):
    amortizer, _ = trained_gaussian
    rng = np.random.default_rng(6)
    sets = [rng.normal(size=(n, 2)) for n in (3, 17, 40)]
    theta = np.array([[0.1, -0.2], [0.5, 0.5]])
    together = amortizer.log_prob(theta, sets)
    apart = np.stack([amortizer.log_prob(theta, s) for s in sets])
    np.testing.assert_allclose(together, apart, atol=1e-4)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda a: a.sample(np.array([[np.nan, 0.0]]), 10), "contains NaN"),
        (lambda a: a.sample(np.array([[np.inf, 0.0]]), 10), "contains Inf"),
        (lambda a: a.sample(np.zeros((5, 3)), 10), "wrong number of features"),
        (lambda a: a.sample(np.zeros((0, 2)), 10), "empty"),
        (lambda a: a.sample(np.zeros((5, 2)), 10, parameters=["sigma"]), r"unknown parameter name\(s\) \['sigma'\]"),
        (lambda a: a.log_prob({"mu[1]": 0.0, "tau": 1.0}, np.zeros((5, 2))), r"unknown parameter name\(s\) \['tau'\]"),
        (lambda a: a.log_prob({"mu[1]": 0.0}, np.zeros((5, 2))), r"missing parameter\(s\) \['mu\[2\]'\]"),
        (lambda a: a.sample(np.zeros((5, 2)), 0), "positive integer"),
    ],
)
def test_bad_input_raises_a_clear_error(untrained_gaussian, call, message):
    with pytest.raises(ValueError, match=message):
        call(untrained_gaussian)


def test_data_unlike_the_training_simulations_warns_and_names_the_statistic(trained_gaussian, gaussian_model):
    """Data the prior predictive never produces (here: 40 prior SDs away) get a warning naming the statistic."""
    amortizer, _ = trained_gaussian
    _, data = _held_out(gaussian_model, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # simulations from the model are inside the range
        amortizer.sample(data, 10)
    far = data["x"][0][data["mask"][0] > 0].numpy() + 40.0
    with pytest.warns(UserWarning, match=r"data set\(s\) \[0\] lie outside the range of the \d+ prior-predictive simulations.*: mean of 'y1' = "):
        amortizer.sample(far, 10)
    with pytest.warns(UserWarning, match="outside the range"):
        amortizer.log_prob(np.zeros((1, 2)), far)
