"""Adversarial robustness: the attack against a closed-form worst case, the FIM-trace regularizer, the report, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from amortbayes import FIMTrace, TrainSettings, attack, fit, load, robustness_report, robustness_tradeoff, save
from amortbayes.amortizers import EnsembleAmortizer, MultilevelAmortizer, PosteriorAmortizer, PosteriorSettings
from amortbayes.models import GaussianLinear, HierarchicalGaussian
from amortbayes.networks import FlowSettings
from amortbayes.robust import LinearGaussianPosterior, fim_trace
from amortbayes.robust.targets import make_target
from conftest import tiny_settings
from test_train import Interrupting


def _linear_posterior(seed: int, b: int = 6, d: int = 12, k: int = 3) -> LinearGaussianPosterior:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(k, d, generator=g)
    M = torch.randn(k, k, generator=g)
    return LinearGaussianPosterior(A, torch.randn(k, generator=g), M @ M.T / k + 0.2 * torch.eye(k),
                                   torch.randn(b, d, generator=g))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_l2_attack_reaches_the_closed_form_worst_case(seed):
    post = _linear_posterior(seed)
    for eps in (0.05, 0.5, 2.0):
        result = attack(post, eps=eps, seed=seed)
        optimum = post.worst_case_kl(eps)
        exact = post.kl(torch.as_tensor(result.delta)).numpy()
        assert np.all(np.linalg.norm(result.delta, axis=1) <= eps * (1 + 1e-5))
        assert np.all(exact >= 0.95 * optimum), exact / optimum  # within 5 % of the optimum, every data set
        assert np.all(exact <= optimum * (1 + 1e-6))
        # the reported Monte Carlo KL estimates the perturbation's exact KL
        np.testing.assert_allclose(result.kl, exact, rtol=0.05)


def test_linf_attack_stays_in_its_box_and_beats_the_inscribed_l2_ball():
    post = _linear_posterior(3)
    eps, d = 0.1, post.x.shape[1]
    result = attack(post, eps=eps, norm="linf", seed=0)
    assert np.abs(result.delta).max() <= eps * (1 + 1e-6)
    exact = post.kl(torch.as_tensor(result.delta)).numpy()
    # the L-infinity box holds the L2 ball of radius eps and lies in the one of radius eps sqrt(d)
    assert np.all(exact >= 0.95 * post.worst_case_kl(eps))
    assert np.all(exact <= post.worst_case_kl(eps * np.sqrt(d)))


def test_attack_on_an_amortizer_beats_random_perturbations_and_respects_columns():
    model = GaussianLinear(dim=4)
    amortizer = PosteriorAmortizer(model, tiny_settings())
    fit(amortizer, model, settings=TrainSettings(epochs=1, iterations_per_epoch=30, batch_size=32), progress=False)
    x = model.simulate(5, torch.Generator().manual_seed(1))["x"]
    result = attack(amortizer, x.numpy(), eps=0.5, seed=0, eval_draws=2000)
    assert result.x_attacked.shape == x.shape
    np.testing.assert_allclose(result.x_attacked - x.numpy(), result.delta_raw, atol=1e-5)
    target = make_target(amortizer, x.numpy())
    g = torch.Generator().manual_seed(5)
    for _ in range(3):  # random directions of the same norm move the posterior less
        u = torch.randn(x.shape, generator=g)
        u = 0.5 * u / u.reshape(5, -1).norm(dim=1)[:, None, None]
        from amortbayes.robust.attack import kl_estimate

        random_kl, _ = kl_estimate(target, u, 2000, g)
        assert np.all(result.kl > random_kl)
    only = attack(amortizer, x.numpy(), eps=0.5, columns=["x2"], steps=5, eval_draws=50)
    assert np.all(only.delta[..., [0, 2, 3]] == 0) and np.any(only.delta[..., 1] != 0)


def test_multilevel_attack_of_one_group_moves_only_that_groups_rows():
    model = HierarchicalGaussian()
    amortizer = MultilevelAmortizer(model)
    fit(amortizer, model, settings=TrainSettings(epochs=1, iterations_per_epoch=5, batch_size=8), progress=False)
    data = model.simulate(1, torch.Generator().manual_seed(0))
    label = amortizer.prepare(data).group_labels[0][2]  # a level; an integer that is no level is an index
    result = attack(amortizer, data, eps=0.5, group=label, steps=5, eval_draws=50)
    moved = np.abs(result.delta[0]).reshape(result.delta.shape[1], -1).max(axis=1)
    assert moved[2] > 0 and np.all(np.delete(moved, 2) == 0)
    assert np.isfinite(result.kl).all() and result.kl[0] > 0
    with pytest.raises(ValueError, match="unknown group 'nope'"):
        attack(amortizer, data, eps=0.5, group="nope")


@pytest.fixture(scope="module")
def linear_pair():
    """Plain and FIM-regularized amortizers of the 10-dimensional Gaussian linear model, same seed (same standardization)."""
    model = GaussianLinear(dim=10)
    settings = TrainSettings(epochs=6, iterations_per_epoch=100, batch_size=64)
    small = PosteriorSettings(flow=FlowSettings(layers=3, hidden=32))
    plain, regularized = PosteriorAmortizer(model, small), PosteriorAmortizer(model, small)
    fit(plain, model, settings=settings, progress=False, seed=0)
    history = fit(regularized, model, settings=settings, progress=False, seed=0, regularizer=FIMTrace(0.1))
    return model, plain, regularized, history


def test_fim_regularization_cuts_the_attacked_kl_at_a_small_cost_in_nll(linear_pair):
    model, plain, regularized, history = linear_pair
    assert "fim_trace" in history.columns and history["fim_trace"].notna().all()
    sims = model.simulate(100, torch.Generator().manual_seed(11))
    table = robustness_tradeoff({"plain": plain, "fim": regularized}, sims, eps=0.5, eval_draws=300)
    kl_plain, kl_fim = table["kl_mean"].to_numpy()
    nll_plain, nll_fim = table["nll"].to_numpy()
    assert table["beta"].tolist() == [0.0, 0.1]
    assert kl_plain / kl_fim > 1.5, table  # a clear factor
    assert (nll_fim - nll_plain) / abs(nll_plain) < 0.10, table
    # the regularized posterior's Fisher information with respect to the data is smaller
    batch = {k: v[:64] for k, v in sims.items()}
    torch.manual_seed(0)
    assert fim_trace(regularized, batch).mean() < fim_trace(plain, batch).mean()


def test_report_has_a_clean_row_and_kl_grows_with_the_radius(linear_pair, tmp_path):
    model, plain, _, _ = linear_pair
    report = robustness_report(plain, model, (0.1, 0.5, 1.0), n_sims=40, eval_draws=200, seed=3)
    s = report.summary
    assert s["eps"].tolist() == [0.0, 0.1, 0.5, 1.0]
    assert s["kl_mean"].iloc[0] == 0 and np.all(np.diff(s["kl_median"]) > 0)
    # clean posteriors of a trained amortizer are calibrated to within a few per cent
    assert abs(s["coverage_error"].iloc[0]) < 0.06
    # an attack at radius 1 makes them over-confident
    assert s["coverage_error"].iloc[-1] < s["coverage_error"].iloc[0]
    assert set(report.coverage.columns) == {"eps", "parameter", "level", "coverage"}
    assert len(report.kl) == 4 * 40
    fig = report.plot(tmp_path / "robust.png")
    assert (tmp_path / "robust.png").exists() and len(fig.axes) == 2


def test_regularizer_is_saved_with_the_amortizer_and_resumed_from_checkpoints(tmp_path, linear_pair):
    model, _, regularized, _ = linear_pair
    loaded = load(save(regularized, tmp_path / "saved"), model=model)
    assert loaded.regularizer == FIMTrace(0.1)

    settings = TrainSettings(epochs=3, iterations_per_epoch=4, batch_size=16, validation_sims=16, adapt_sims=64)
    reg = FIMTrace(0.5, every=2, window=3, data_sets=4)
    full_net = PosteriorAmortizer(model, tiny_settings())
    full = fit(full_net, model, settings=settings, checkpoint_dir=tmp_path / "a", progress=False, regularizer=reg)
    part_net = PosteriorAmortizer(model, tiny_settings())
    # simulate() calls: 1 validation set, 2 standardization, then 4 per epoch: killed in epoch 3
    with pytest.raises(KeyboardInterrupt):
        fit(part_net, Interrupting(model, fail_at_call=2 + 2 * 4 + 2), settings=settings,
            checkpoint_dir=tmp_path / "b", progress=False, regularizer=reg)
    # the checkpoint keeps the window of gradients; a resumed run ends where the uninterrupted one did
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert len(state["regularizer"]["window"]) == 3
    resumed_net = PosteriorAmortizer(model, tiny_settings())
    resumed = fit(resumed_net, model, settings=settings, checkpoint_dir=tmp_path / "b", resume=True, progress=False,
                  regularizer=reg)
    np.testing.assert_allclose(resumed["train_loss"], full["train_loss"], rtol=1e-5)
    for (name, a), (_, b) in zip(full_net.state_dict().items(), resumed_net.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    with pytest.raises(ValueError, match="written for another model/amortizer"):
        fit(PosteriorAmortizer(model, tiny_settings()), model, settings=settings, checkpoint_dir=tmp_path / "b",
            resume=True, progress=False, regularizer=FIMTrace(1.0))


def test_multilevel_amortizer_trains_with_the_regularizer():
    model = HierarchicalGaussian()
    amortizer = MultilevelAmortizer(model)
    history = fit(amortizer, model, settings=TrainSettings(epochs=1, iterations_per_epoch=4, batch_size=8),
                  progress=False, regularizer=FIMTrace(0.1, every=1, window=1))
    assert np.isfinite(history["fim_trace"]).all() and history["fim_trace"].iloc[0] > 0


def test_bad_input_raises_clear_errors():
    post = _linear_posterior(0)
    for eps in (0, -0.5, float("nan"), "big"):
        with pytest.raises(ValueError, match="eps must be a positive number"):
            attack(post, eps=eps)
    with pytest.raises(ValueError, match="unknown norm 'l1'; known norms are 'l2' and 'linf'"):
        attack(post, eps=0.1, norm="l1")
    for beta in (-0.1, float("inf"), "x"):
        with pytest.raises(ValueError, match="FIMTrace beta must be a"):
            FIMTrace(beta)
    with pytest.raises(ValueError, match="every must be a positive integer"):
        FIMTrace(0.1, every=0)
    model = GaussianLinear(dim=3)
    amortizer = PosteriorAmortizer(model, tiny_settings())
    with pytest.raises(ValueError, match=r"unknown data column\(s\) \['y'\].*\['x1', 'x2', 'x3'\]"):
        fit(amortizer, model, settings=TrainSettings(epochs=1, iterations_per_epoch=1), progress=False,
            regularizer=FIMTrace(0.1, columns=("y",)))
    with pytest.raises(TypeError, match="regularizer must be a regularizer such as"):
        fit(amortizer, model, settings=TrainSettings(epochs=1, iterations_per_epoch=1), progress=False, regularizer=0.1)
    with pytest.raises(TypeError, match="robustness analyses take a PosteriorAmortizer"):
        fit(EnsembleAmortizer(model), model, settings=TrainSettings(epochs=1, iterations_per_epoch=1), progress=False,
            regularizer=FIMTrace(0.1))
    with pytest.raises(ValueError, match="eps must be a positive number"):
        robustness_report(amortizer, model, (0.5, -1.0))
    with pytest.raises(ValueError, match="unknown norm"):
        robustness_report(amortizer, model, 0.5, norm="l3")


def test_robustness_tradeoff_frame_plots(tmp_path):
    from amortbayes.plots import plot_robustness_tradeoff

    frame = pd.DataFrame({"beta": [0.0, 0.1, 1.0], "nll": [1.0, 1.1, 1.5], "kl_mean": [0.3, 0.1, 0.02]})
    fig = plot_robustness_tradeoff(frame, tmp_path / "t.png")
    assert (tmp_path / "t.png").exists() and len(fig.axes) == 1
    with pytest.raises(ValueError, match="needs the columns"):
        plot_robustness_tradeoff(frame.drop(columns="nll"))


def test_formula_fit_with_a_regularizer_attacks_its_response_only():
    from amortbayes import amortize
    from amortbayes.data import load_dataset

    sleep = load_dataset("sleepstudy")
    fitted = amortize("Reaction ~ Days + (Days | Subject)", sleep, budget=30, method="amortized", draws=100,
                      progress=False, regularizer=FIMTrace(0.1))
    assert fitted.model.group_data == "rows"  # a regularizer acts on rows
    assert fitted.amortizer.regularizer.columns == ("Reaction",)
    result = fitted.attack(0.5, steps=5, eval_draws=50)
    response = list(fitted.model.data_names).index("Reaction")
    others = np.delete(result.delta, response, axis=-1)
    assert np.all(others == 0) and np.any(result.delta[..., response] != 0)
    report = fitted.robustness(eps=(0.5,), n_sims=4, eval_draws=50, steps=3)
    assert report.summary["eps"].tolist() == [0.0, 0.5]
    moments = amortize("Reaction ~ Days + (Days | Subject)", sleep, budget=5, method="amortized", draws=50,
                       progress=False)
    with pytest.raises(ValueError, match="moment sums.*group_data='rows'"):
        moments.attack(0.5)
