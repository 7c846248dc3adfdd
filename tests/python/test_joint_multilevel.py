"""A two-level model's surrogate likelihood in place of its own: LOGO, importance draws and group evidence still exact.

The hierarchical Gaussian model has closed-form LOGO predictive densities and posteriors;
with its likelihood replaced by the jointly trained likelihood network (as for a simulator
without one), the inference procedures must still reproduce them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amortbayes import TrainSettings, fit, load, save
from amortbayes.amortizers import MultilevelJointAmortizer, MultilevelJointSettings, MultilevelSettings
from amortbayes.models import HierarchicalGaussian
from amortbayes.networks import FlowSettings

SMALL = MultilevelJointSettings(
    multilevel=MultilevelSettings(hidden=32, group_summary_dim=8, global_summary_dim=16,
                                  global_flow=FlowSettings(layers=2, hidden=32),
                                  local_flow=FlowSettings(kind="affine", layers=2, hidden=32)),
    likelihood=FlowSettings(kind="affine", layers=2, hidden=32))


@pytest.fixture(scope="module")
def trained():
    """Trained for the accuracy checks (about 2 minutes: slow tests)."""
    model = HierarchicalGaussian()
    amortizer = MultilevelJointAmortizer(model, SMALL)
    fit(amortizer, model, settings=TrainSettings(epochs=10, iterations_per_epoch=100, batch_size=64,
                                                 learning_rate=1e-3), progress=False, seed=0)
    return model, amortizer


def _data(model, seed=3, groups=8):
    b = model.simulate(1, torch.Generator().manual_seed(seed))
    keep = int(b["group_mask"][0].sum())
    if keep < groups:
        return _data(model, seed + 100, groups)
    return b


@pytest.mark.slow
def test_the_surrogate_group_likelihood_is_the_models(trained):
    model, amortizer = trained
    b = model.simulate(64, torch.Generator().manual_seed(1))
    exact = model.log_likelihood(b["theta_global"], b["theta_local"], b["x"], b["mask"])
    got = amortizer.surrogate(model).log_likelihood(b["theta_global"], b["theta_local"], b["x"], b["mask"])
    valid = b["group_mask"] > 0
    per_row = ((got - exact).abs()[valid] / b["mask"].sum(-1)[valid]).mean()
    assert float(per_row) < 0.05


@pytest.mark.slow
def test_logo_with_the_surrogate_is_within_one_se_of_the_closed_form(trained):
    model, amortizer = trained
    b = _data(model)
    exact = model.logo_elpd(b["x"][0].numpy(), b["mask"][0].numpy())
    exact = exact[np.isfinite(exact)]
    logo = amortizer.logo(b, model, n=2000, importance=16, seed=0, progress=False)
    se = np.sqrt(len(exact)) * exact.std(ddof=1)
    assert abs(logo["elpd"].sum() - exact.sum()) < se, (logo["elpd"].sum(), exact.sum(), se)
    np.testing.assert_allclose(logo["elpd"].to_numpy(), exact, atol=0.3)


@pytest.mark.slow
def test_importance_draws_with_the_surrogate_reach_the_exact_posterior(trained):
    model, amortizer = trained
    b = _data(model, seed=5)
    exact = model.posterior(b["x"].numpy(), b["mask"].numpy(), b["group_mask"].numpy())
    draws = amortizer.importance_draws(b, model, n=2000, seed=0, warn=False, progress=False)
    mu = draws.global_draws[0, :, 0]
    assert abs(mu.mean() - exact["mu_mean"][0]) < 0.15 * exact["mu_sd"][0]
    assert mu.std() == pytest.approx(exact["mu_sd"][0], rel=0.15)


def _exact_log_evidence(model, x, mask):
    from scipy import stats

    y, group = [], []
    for j in range(x.shape[0]):
        keep = mask[j] > 0
        y.extend(x[j, keep, 0].tolist())
        group.extend([j] * int(keep.sum()))
    group = np.array(group)
    cov = model.sigma**2 * np.eye(len(y)) + model.tau**2 * (group[:, None] == group[None, :]) + model.mu_sd**2
    return stats.multivariate_normal(np.zeros(len(y)), cov).logpdf(np.array(y))


@pytest.mark.slow
def test_the_evidence_with_the_model_and_with_the_surrogate_is_the_closed_form(trained):
    model, amortizer = trained
    b = _data(model, seed=8)
    j = int(b["group_mask"][0].sum())
    exact = _exact_log_evidence(model, b["x"][0, :j].numpy(), b["mask"][0, :j].numpy())
    rows = int(b["mask"][0].sum())
    with_model = amortizer.multilevel.importance_draws(b, model, n=1000, seed=0, warn=False, progress=False)
    assert with_model.diagnostics["log_evidence"] == pytest.approx(exact, abs=0.1)
    surrogate = amortizer.log_marginal_likelihood(b, model, n=1000, seed=0)
    assert surrogate["mc_se"] < 0.1
    # the surrogate's error grows with the rows: a few hundredths of a nat each
    assert abs(surrogate["log_ml"] - exact) < 0.03 * rows, (surrogate, exact, rows)


@pytest.fixture(scope="module")
def briefly_trained():
    model = HierarchicalGaussian()
    amortizer = MultilevelJointAmortizer(model, SMALL)
    fit(amortizer, model, settings=TrainSettings(epochs=2, iterations_per_epoch=50, batch_size=32), progress=False)
    return model, amortizer


def test_the_surrogate_runs_logo_and_importance_draws_of_a_briefly_trained_amortizer(briefly_trained):
    # the accuracy is checked by the slow tests above; here every path runs and the shapes are right
    model, amortizer = briefly_trained
    b = _data(model)
    j = int(b["group_mask"][0].sum())
    logo = amortizer.logo(b, model, n=100, importance=4, seed=0, progress=False)
    assert len(logo) == j and np.isfinite(logo["elpd"]).all()
    evidence = amortizer.log_marginal_likelihood(b, model, n=100, seed=0)
    assert np.isfinite(evidence["log_ml"]) and evidence["mc_se"] >= 0
    surrogate = amortizer.surrogate(model)
    lik = surrogate.log_likelihood(b["theta_global"], b["theta_local"], b["x"], b["mask"])
    assert lik.shape == b["group_mask"].shape
    # a padded row changes nothing; an observed one does
    x = b["x"].clone()
    x[0, 0, int(b["mask"][0, 0].sum()):] += 5.0
    torch.testing.assert_close(surrogate.log_likelihood(b["theta_global"], b["theta_local"], x, b["mask"]), lik)
    x[0, 0, 0] += 5.0
    assert not torch.allclose(surrogate.log_likelihood(b["theta_global"], b["theta_local"], x, b["mask"])[0, 0], lik[0, 0])


def test_a_saved_multilevel_joint_amortizer_loads_back(briefly_trained, tmp_path):
    model, amortizer = briefly_trained
    save(amortizer, tmp_path / "mj")
    back = load(tmp_path / "mj", model=model)
    b = _data(model)
    args = (b["theta_global"], b["theta_local"], b["x"], b["mask"])
    torch.testing.assert_close(back.surrogate(model).log_likelihood(*args), amortizer.surrogate(model).log_likelihood(*args))
    assert back.settings == amortizer.settings


def test_bad_input_is_refused_clearly():
    from amortbayes.data import load_sleepstudy
    from amortbayes.formula import parse_terms
    from amortbayes.formula.model import FormulaModel

    moments = FormulaModel(parse_terms("Reaction ~ Days + (1 | Subject)", load_sleepstudy()))
    with pytest.raises(ValueError, match="moment sums; a likelihood network models rows"):
        MultilevelJointAmortizer(moments)
    with pytest.raises(ValueError, match=r"has no global_log_prior\(\)"):
        MultilevelJointAmortizer(HierarchicalGaussian(), SMALL).surrogate(object())
