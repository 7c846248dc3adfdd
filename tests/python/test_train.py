"""fit(): online and offline training, resume after an interruption, the NaN guard, devices."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from amortbayes import (FlowSettings, OverfittingWarning, PosteriorAmortizer, PosteriorSettings, TrainingDiverged,
                        TrainSettings, fit)
from amortbayes.models import ConjugateGaussian, TwoMoons
from conftest import tiny_settings

SETTINGS = TrainSettings(epochs=4, iterations_per_epoch=5, batch_size=16, validation_sims=32, adapt_sims=64)


class Interrupting:
    """Wraps a model and raises after a number of simulate() calls, like a killed job."""

    def __init__(self, model, fail_at_call: int, error=KeyboardInterrupt):
        self.model, self.fail_at_call, self.error, self.calls = model, fail_at_call, error, 0

    @property
    def info(self):
        return self.model.info

    def simulate(self, batch_size, generator=None):
        self.calls += 1
        if self.calls == self.fail_at_call:
            raise self.error("interrupted")
        return self.model.simulate(batch_size, generator)


class NaNAfter(Interrupting):
    def simulate(self, batch_size, generator=None):
        self.calls += 1
        batch = self.model.simulate(batch_size, generator)
        if self.calls >= self.fail_at_call:
            batch["theta_global"] = batch["theta_global"] * float("nan")
        return batch


def test_resume_continues_from_the_last_epoch_with_the_same_optimizer_state(tmp_path):
    model = ConjugateGaussian()
    reference = PosteriorAmortizer(model, tiny_settings())
    full = fit(reference, model, settings=SETTINGS, checkpoint_dir=tmp_path / "a", progress=False)

    interrupted = PosteriorAmortizer(model, tiny_settings())
    # calls: 1 = validation set, 2 = standardization batch, then 5 per epoch: fail in epoch 3
    flaky = Interrupting(model, fail_at_call=2 + 2 * 5 + 3)
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, flaky, settings=SETTINGS, checkpoint_dir=tmp_path / "b", progress=False)
    saved = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 2
    assert all(s["step"] == 10 for s in saved["optimizer"]["state"].values())

    resumed_model = PosteriorAmortizer(model, tiny_settings())
    resumed = fit(resumed_model, model, settings=SETTINGS, checkpoint_dir=tmp_path / "b", resume=True, progress=False)
    assert resumed["epoch"].tolist() == [1, 2, 3, 4]
    # the resumed run ends exactly where the uninterrupted one did
    np.testing.assert_allclose(resumed["train_loss"].to_numpy(), full["train_loss"].to_numpy(), rtol=1e-6)
    for (name, a), (_, b) in zip(reference.state_dict().items(), resumed_model.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


def test_continued_training_keeps_the_standardization_and_lowers_the_loss():
    model = ConjugateGaussian()
    amortizer = PosteriorAmortizer(model, tiny_settings())
    first = fit(amortizer, model, settings=SETTINGS, progress=False)
    learned = {k: v.clone() for k, v in amortizer.state_dict().items() if k.endswith(("mean", "std"))}
    more = fit(amortizer, model, settings=dataclasses.replace(SETTINGS, learning_rate=3e-3),
               adapt=False, progress=False)
    for name, value in learned.items():  # the weights were trained under this standardization
        torch.testing.assert_close(amortizer.state_dict()[name], value, msg=name)
    assert more["val_loss"].iloc[-1] < first["val_loss"].iloc[-1]
    # a fresh amortizer has nothing to continue from
    with pytest.raises(ValueError, match="adapt=False.*standardization.*not.*adapt=True first"):
        fit(PosteriorAmortizer(model, tiny_settings()), model, settings=SETTINGS, adapt=False, progress=False)


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    gauss = ConjugateGaussian()
    fit(PosteriorAmortizer(gauss, tiny_settings()), gauss, settings=SETTINGS, checkpoint_dir=tmp_path, progress=False)
    moons = TwoMoons()
    with pytest.raises(ValueError, match="written for another model.*'conjugate_gaussian'.*'two_moons'"):
        fit(PosteriorAmortizer(moons, tiny_settings()), moons, settings=SETTINGS, checkpoint_dir=tmp_path,
            resume=True, progress=False)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    gauss = ConjugateGaussian()
    with pytest.raises(ValueError, match="no checkpoint found"):
        fit(PosteriorAmortizer(gauss, tiny_settings()), gauss, settings=SETTINGS, checkpoint_dir=tmp_path,
            resume=True, progress=False)
    with pytest.raises(ValueError, match="needs the checkpoint_dir"):
        fit(PosteriorAmortizer(gauss, tiny_settings()), gauss, settings=SETTINGS, resume=True, progress=False)


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    gauss = ConjugateGaussian()
    bad = NaNAfter(gauss, fail_at_call=2 + 5 + 2)  # NaN from the second step of the second epoch on
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, step 4 \(non-finite losses at steps "
                                               r"\[2, 3, 4\].*checkpoint of epoch 1"):
        fit(PosteriorAmortizer(gauss, tiny_settings()), bad, settings=SETTINGS, checkpoint_dir=tmp_path,
            progress=False)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 1


class NaNOnce(Interrupting):
    def simulate(self, batch_size, generator=None):
        self.calls += 1
        batch = self.model.simulate(batch_size, generator)
        if self.calls == self.fail_at_call:
            batch["theta_global"][0] = float("nan")  # one bad data set in one batch
        return batch


def test_an_isolated_nan_batch_is_skipped_and_counted():
    gauss = ConjugateGaussian()
    history = fit(PosteriorAmortizer(gauss, tiny_settings()), NaNOnce(gauss, fail_at_call=2 + 5 + 3),
                  settings=SETTINGS, progress=False)
    assert history["skipped_batches"].tolist() == [0, 1] + [0] * (len(history) - 2)
    assert np.isfinite(history["train_loss"]).all()
    with pytest.raises(TrainingDiverged, match="max_skipped_batches=0"):
        fit(PosteriorAmortizer(gauss, tiny_settings()), NaNOnce(gauss, fail_at_call=2 + 5 + 3),
            settings=dataclasses.replace(SETTINGS, max_skipped_batches=0), progress=False)


def test_offline_training_on_a_fixed_budget_uses_a_validation_split():
    gauss = ConjugateGaussian()
    data = gauss.simulate(640, torch.Generator().manual_seed(0))
    settings = TrainSettings(epochs=3, batch_size=64, validation_fraction=0.25)
    history = fit(PosteriorAmortizer(gauss, tiny_settings()), data=data, settings=settings, progress=False)
    assert len(history) == 3 and history["val_loss"].notna().all()
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
    with pytest.raises(ValueError, match="contains NaN"):
        fit(PosteriorAmortizer(gauss, tiny_settings()), data={**data, "x": data["x"] * math.nan}, progress=False)


def test_training_is_reproducible_with_a_seed():
    gauss = ConjugateGaussian()
    runs = [fit(PosteriorAmortizer(gauss, tiny_settings()), gauss, settings=SETTINGS, seed=3, progress=False)
            for _ in range(2)]
    np.testing.assert_allclose(runs[0]["val_loss"].to_numpy(), runs[1]["val_loss"].to_numpy(), rtol=1e-6)


def test_argument_errors():
    gauss = ConjugateGaussian()
    with pytest.raises(ValueError, match="needs a simulator"):
        fit(PosteriorAmortizer(gauss, tiny_settings()), progress=False)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        TrainSettings(epochs=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            fit(PosteriorAmortizer(gauss, tiny_settings()), gauss, settings=SETTINGS, device="cuda", progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_and_sampling_on_gpu():
    gauss = ConjugateGaussian()
    amortizer = PosteriorAmortizer(gauss, tiny_settings())
    history = fit(amortizer, gauss, settings=SETTINGS, device="cuda", progress=False)
    assert history["val_loss"].notna().all()
    assert amortizer.sample_array(torch.zeros(10, 2).numpy(), 100).shape == (100, 2)


def test_the_amortizer_ends_with_the_moving_average_of_the_iterates(tmp_path):
    model = ConjugateGaussian()
    amortizer = PosteriorAmortizer(model, tiny_settings())
    start = [p.detach().clone() for p in amortizer.parameters()]
    iterates = []
    hook = register_optimizer_step_post_hook(
        lambda opt, args, kwargs: iterates.append([p.detach().clone() for p in amortizer.parameters()])
    )
    settings = TrainSettings(epochs=2, iterations_per_epoch=6, batch_size=16, validation_sims=32, adapt_sims=64,
                             ema_decay=0.8)
    try:
        fit(amortizer, model, settings=settings, checkpoint_dir=tmp_path, progress=False)
    finally:
        hook.remove()
    assert len(iterates) == 12
    expected = start
    for t, w in enumerate(iterates):
        d = min(0.8, (1 + t) / (10 + t))
        expected = [d * e + (1 - d) * x for e, x in zip(expected, w)]
    for e, p in zip(expected, amortizer.parameters()):
        torch.testing.assert_close(p.detach(), e)
    # the checkpoint keeps the last iterate for resuming, and the average beside it
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    last = dict(zip([n for n, _ in amortizer.named_parameters()], iterates[-1]))
    for name, w in last.items():
        torch.testing.assert_close(saved["model"][name], w)
    assert not all(torch.equal(a, b) for a, b in zip(iterates[-1], amortizer.parameters()))
    with pytest.raises(ValueError, match="ema_decay"):
        TrainSettings(ema_decay=1.0)


# -- fixed simulation budgets: early stopping, best weights, budget-sized settings ---------------------------------

OVERFIT_MODEL = ConjugateGaussian(dim=10, prior_sd=0.1**0.5, noise_sd=0.1**0.5, n_obs=(1, 1))
BIG_NETS = PosteriorSettings(summary="deepset", summary_dim=32, summary_hidden=64, flow=FlowSettings(layers=4, hidden=64))


def _validation_split(data, settings: TrainSettings, seed: int = 0):
    """The split fit() documents: the first round(n * validation_fraction) of a permutation seeded with seed + 1."""
    n = data["x"].shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    n_val = int(round(n * settings.validation_fraction))
    return {k: v[perm[:n_val]] for k, v in data.items()}


def _loss_on(amortizer, batch) -> float:
    amortizer.eval()
    with torch.no_grad():
        return float(amortizer.loss(batch))


def test_early_stopping_ends_with_the_best_epoch_of_an_overfitting_run():
    # 300 simulations of a ten-dimensional posterior and a set network of ~100k weights: it memorises them
    data = OVERFIT_MODEL.simulate(300, torch.Generator().manual_seed(0))
    settings = TrainSettings(epochs=80, batch_size=32, learning_rate=3e-3, patience=6, ema_decay=0.9)
    amortizer = PosteriorAmortizer(OVERFIT_MODEL, BIG_NETS)
    with pytest.warns(OverfittingWarning, match=r"validation loss rose from .* \(epoch \d+\) .* training loss fell"
                                                 r".* memorise the 270 training simulations; the amortizer keeps epoch"):
        history = fit(amortizer, data=data, settings=settings, progress=False)
    best = int(history["val_loss"].idxmin())
    assert len(history) == best + 1 + 6 < 80  # stopped six epochs after the best one
    assert history["kept"].tolist() == history["best"].tolist() == [i == best for i in range(len(history))]
    assert history["val_loss"].iloc[-1] > history["val_loss"].iloc[best] + 0.5  # it did overfit
    assert history["fit_loss"].iloc[-1] < history["fit_loss"].iloc[best]  # the same weights on training simulations
    # the weights it ends with are the best epoch's: their validation loss is the best one, not the last
    val = _validation_split(data, settings)
    assert _loss_on(amortizer, val) == pytest.approx(history["val_loss"].iloc[best], abs=1e-4)


def test_without_keep_best_the_amortizer_ends_with_the_last_epoch():
    data = OVERFIT_MODEL.simulate(300, torch.Generator().manual_seed(0))
    settings = TrainSettings(epochs=12, batch_size=32, learning_rate=3e-3, patience=None, keep_best=False, ema_decay=0.9)
    amortizer = PosteriorAmortizer(OVERFIT_MODEL, BIG_NETS)
    with pytest.warns(OverfittingWarning, match="ends with epoch 12's weights"):
        history = fit(amortizer, data=data, settings=settings, progress=False)
    assert len(history) == 12 and history["kept"].tolist() == [False] * 11 + [True]
    assert _loss_on(amortizer, _validation_split(data, settings)) == pytest.approx(history["val_loss"].iloc[-1], abs=1e-4)


class InterruptedLoss(PosteriorAmortizer):
    """Raises KeyboardInterrupt at the n-th training loss, like a killed job."""

    fail_at = 0

    def loss(self, batch):
        if self.training:
            InterruptedLoss.calls += 1
            if InterruptedLoss.calls == self.fail_at:
                raise KeyboardInterrupt("interrupted")
        return super().loss(batch)


def test_an_interrupted_early_stopping_run_resumes_to_the_same_best_weights(tmp_path):
    data = OVERFIT_MODEL.simulate(300, torch.Generator().manual_seed(0))
    settings = TrainSettings(epochs=80, batch_size=32, learning_rate=3e-3, patience=6, ema_decay=0.9)
    reference = PosteriorAmortizer(OVERFIT_MODEL, BIG_NETS)
    with pytest.warns(OverfittingWarning):
        full = fit(reference, data=data, settings=settings, progress=False)
    best_epoch = int(full.loc[full["kept"], "epoch"].iloc[0])

    interrupted = InterruptedLoss(OVERFIT_MODEL, BIG_NETS)
    InterruptedLoss.calls, InterruptedLoss.fail_at = 0, 9 * (best_epoch + 2) + 4  # 9 steps per epoch; after the best
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, data=data, settings=settings, checkpoint_dir=tmp_path, progress=False)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == best_epoch + 2 and saved["best"]["epoch"] == best_epoch  # the checkpoint names the best epoch

    resumed = PosteriorAmortizer(OVERFIT_MODEL, BIG_NETS)
    with pytest.warns(OverfittingWarning):
        again = fit(resumed, data=data, settings=settings, checkpoint_dir=tmp_path, resume=True, progress=False)
    pd.testing.assert_frame_equal(again.drop(columns="seconds"), full.drop(columns="seconds"), rtol=1e-5)
    for (name, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    # resuming a run that has stopped early trains no further and keeps the best weights
    after = PosteriorAmortizer(OVERFIT_MODEL, BIG_NETS)
    with pytest.warns(OverfittingWarning):
        done = fit(after, data=data, settings=settings, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert len(done) == len(full)
    for (name, a), (_, b) in zip(reference.state_dict().items(), after.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


def test_online_training_keeps_its_budget_and_can_keep_its_best_epoch():
    model = ConjugateGaussian()
    last = fit(PosteriorAmortizer(model, tiny_settings()), model, settings=SETTINGS, progress=False)
    assert len(last) == SETTINGS.epochs and last["kept"].tolist() == [False] * (SETTINGS.epochs - 1) + [True]
    assert last["best"].sum() == 1 and bool(last["best"].iloc[int(last["val_loss"].idxmin())])  # reported all the same
    amortizer = PosteriorAmortizer(model, tiny_settings())
    settings = dataclasses.replace(SETTINGS, epochs=6, patience=1, keep_best=True, learning_rate=3e-2)
    best = fit(amortizer, model, settings=settings, progress=False)
    assert len(best) == 6  # patience does not cut an online budget
    kept = int(best["val_loss"].idxmin())
    assert best["kept"].tolist() == [i == kept for i in range(6)]
    val = model.simulate(settings.validation_sims, torch.Generator().manual_seed(1))  # fit(seed=0)'s validation set
    assert _loss_on(amortizer, val) == pytest.approx(best["val_loss"].iloc[kept], abs=1e-4)


def test_budget_errors_name_the_problem():
    data = OVERFIT_MODEL.simulate(5, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"budget of 5 simulations is too small for validation_fraction=0.1: it holds "
                                         r"out 0 .*at least 6 simulations"):
        fit(PosteriorAmortizer(OVERFIT_MODEL, tiny_settings()), data=data, settings=TrainSettings(), progress=False)
    with pytest.raises(ValueError, match=r"early stopping \(patience=20\) needs a validation set, but "
                                         r"validation_fraction=0 holds out none of the 5 simulations"):
        fit(PosteriorAmortizer(OVERFIT_MODEL, tiny_settings()), data=data,
            settings=TrainSettings(validation_fraction=0.0), progress=False)
    history = fit(PosteriorAmortizer(OVERFIT_MODEL, tiny_settings()), data=data, progress=False,
                  settings=TrainSettings(epochs=2, validation_fraction=0.0, patience=None, keep_best=False))
    assert len(history) == 2 and history["val_loss"].isna().all()
    for bad, match in (({"patience": 0}, "patience must be a positive integer or None"),
                       ({"weight_decay": -1.0}, "weight_decay must be >= 0")):
        with pytest.raises(ValueError, match=match):
            TrainSettings(**bad)
    with pytest.raises(ValueError, match="simulation budget must be a positive integer, got 0"):
        TrainSettings.for_budget(0)


def test_budget_sized_settings_grow_with_the_budget_and_can_be_overridden():
    small, medium, large = (PosteriorSettings.for_budget(n) for n in (1_000, 10_000, 100_000))
    assert small.flow.hidden <= medium.flow.hidden <= large.flow.hidden
    assert small.flow.hidden < large.flow.hidden
    assert PosteriorSettings.for_budget(1_000, summary_dim=5).summary_dim == 5
    assert TrainSettings.for_budget(10_000, batch_size=7).batch_size == 7
    assert TrainSettings.for_budget(1_000).batch_size <= TrainSettings.for_budget(100_000).batch_size


def test_ten_dimensional_gaussian_at_ten_thousand_simulations_matches_the_closed_form():
    """The issue's case: 10^4 simulations, the default (budget-sized) settings; means within 0.1 SD, SDs within 10 %."""
    data = OVERFIT_MODEL.simulate(10_000, torch.Generator().manual_seed(0))
    amortizer = PosteriorAmortizer(OVERFIT_MODEL, PosteriorSettings.for_budget(10_000))
    history = fit(amortizer, data=data, progress=False)
    assert history["kept"].sum() == 1
    held_out = OVERFIT_MODEL.simulate(200, torch.Generator().manual_seed(12345))
    mean, sd = OVERFIT_MODEL.posterior(held_out["x"].numpy(), held_out["mask"].numpy())
    draws = amortizer.sample_array({"x": held_out["x"], "mask": held_out["mask"]}, 2000, seed=1)
    mean_err = np.abs(draws.mean(1) - mean) / sd
    sd_err = np.abs(draws.std(1) / sd - 1)
    assert mean_err.mean() < 0.1, mean_err.mean(0)
    assert sd_err.mean() < 0.1, sd_err.mean(0)
