"""The pooled-GLM pilot of the global flow and the Laplace local proposal: exact optima, exact and quadrature integrals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from amortbayes.networks import FlowSettings, build_flow, sample_flow
from amortbayes.networks.pilot import PilotSettings, glm_pilot, pilot_context

pytest.importorskip("formulae")

from amortbayes.data import load_epilepsy, load_sleepstudy  # noqa: E402
from amortbayes.formula import parse_terms  # noqa: E402
from amortbayes.formula.model import FormulaModel  # noqa: E402


def _poisson_data(seed: int = 0, j: int = 6, n: int = 30):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(1, j, n, 1, generator=g, dtype=torch.float64)
    r = 0.4 * torch.randn(1, j, 1, 1, generator=g, dtype=torch.float64)  # group effects: clustered counts
    y = torch.poisson(torch.exp(0.5 + 0.8 * t + r), generator=g)
    return torch.cat([torch.ones_like(t), t, y], -1), torch.ones(1, j, n, dtype=torch.float64)


def test_the_pilot_is_the_penalized_glm_optimum_and_its_errors_allow_for_clustering():
    x, mask = _poisson_data()
    s = PilotSettings("poisson", design=(0, 1), response=2, parameters=(0, 1))
    mean, sd = torch.tensor([0.0, 0.0]), torch.tensor([2.0, 2.0])
    est, se = glm_pilot(x, mask, s, mean, sd)
    X, y = x[0, ..., :2].reshape(-1, 2).numpy(), x[0, ..., 2].reshape(-1).numpy()
    b = est[0].numpy()
    mu = np.exp(X @ b)
    # the penalized score is zero at the estimate: X'(y - mu) - (b - m) / s^2
    np.testing.assert_allclose(X.T @ (y - mu) - b / 4.0, 0.0, atol=1e-6)
    model_based = np.sqrt(np.diag(np.linalg.inv(X.T @ (mu[:, None] * X) + np.eye(2) / 4.0)))
    assert np.all(se[0].numpy() >= model_based - 1e-9)
    # the groups' own effects make the intercept's cluster-robust error the larger one
    assert se[0, 0].item() > 1.5 * model_based[0]


def test_the_pilot_handles_separation_and_all_zero_data_by_its_prior_penalty():
    x = torch.zeros(2, 1, 20, 3, dtype=torch.float64)
    x[..., 0] = 1.0
    x[..., 1] = torch.linspace(-1, 1, 20)
    x[0, 0, :, 2] = (x[0, 0, :, 1] > 0).double()  # perfectly separated bernoulli
    s = PilotSettings("binomial", design=(0, 1), response=2, parameters=(0, 1))
    est, se = glm_pilot(x, torch.ones(2, 1, 20), s, torch.zeros(2), torch.full((2,), 3.0))
    assert torch.isfinite(est).all() and torch.isfinite(se).all()
    assert est[0, 1] > 2.0 and se[0, 1] < 3.0  # pushed towards separation, held by the prior
    ctx = pilot_context(x.float(), torch.ones(2, 1, 20), s, torch.zeros(3), torch.full((3,), 3.0))
    assert ctx.shape == (2, 6) and torch.all(ctx[:, [2, 5]] == 0)  # no pilot for the third parameter
    assert torch.all(ctx[:, 3:5] <= 0)  # never wider than the prior


def test_gaussian_pilot_is_ordinary_least_squares():
    g = torch.Generator().manual_seed(1)
    t = torch.randn(3, 2, 25, 1, generator=g, dtype=torch.float64)
    y = 2.0 - 1.5 * t + torch.randn(3, 2, 25, 1, generator=g, dtype=torch.float64)
    x = torch.cat([torch.ones_like(t), t, y], -1)
    mask = torch.ones(3, 2, 25, dtype=torch.float64)
    mask[1, 1, 10:] = 0  # padded rows do not count
    est, _ = glm_pilot(x, mask, PilotSettings("gaussian", (0, 1), 2, (0, 1)), torch.zeros(2), torch.full((2,), 1e6))
    for b in range(3):
        keep = mask[b].reshape(-1) > 0
        X, yy = x[b, ..., :2].reshape(-1, 2)[keep].numpy(), x[b, ..., 2].reshape(-1)[keep].numpy()
        np.testing.assert_allclose(est[b].numpy(), np.linalg.lstsq(X, yy, rcond=None)[0], atol=1e-6)


def test_a_pilot_centred_flow_samples_the_density_it_evaluates():
    # in float64: float32 spline inversion at a pilot scale of 0.01 leaves up to 3e-3 nats of
    # round-off between the two paths (seen in CI), which would hide a real mismatch of that size
    torch.manual_seed(0)
    flow = build_flow(2, 3 + 4, FlowSettings(layers=2, hidden=16), context_shift=True).double()
    ctx = torch.tensor([[0.1, -0.2, 0.3, 5.0, -7.0, math.log(0.01), math.log(0.1)]], dtype=torch.float64)
    z, log_q = sample_flow(flow, 4000, ctx, torch.Generator().manual_seed(0), log_prob=True)
    assert torch.allclose(log_q, flow.log_prob(z[0], context=ctx.expand(4000, -1))[None], atol=1e-8)


def _group(model, j):
    rows = torch.as_tensor(model.observed()[j], dtype=torch.float64)
    return rows, torch.ones(len(rows), dtype=torch.float64)


def test_the_laplace_proposal_of_a_gaussian_group_is_its_exact_conditional_posterior():
    model = FormulaModel(parse_terms("Reaction ~ Days + (Days | Subject)", load_sleepstudy()), group_data="rows")
    theta = model.sample_global(3, torch.Generator().manual_seed(2))
    rows, mask = _group(model, 3)
    draws, log_q = model.local_proposal(theta, rows, mask, 64, torch.Generator().manual_seed(3))
    log_w = (model.log_likelihood(theta[:, None], draws[:, :, None], rows[None, None, None], mask[None, None, None])[..., 0]
             + model.local_log_prior(theta, draws) - log_q)
    estimate = torch.logsumexp(log_w, -1) - math.log(64)
    np.testing.assert_allclose(estimate.numpy(), model.group_log_marginal(theta, rows, mask).numpy(), atol=0.02)


def test_the_laplace_proposal_integrates_a_poisson_group_as_quadrature_does():
    model = FormulaModel(parse_terms("count ~ zAge + zBase * Trt + (1 | patient)", load_epilepsy()), "poisson")
    theta = model.sample_global(4, torch.Generator().manual_seed(4))
    theta[:, :5] = torch.tensor([1.8, 0.1, 0.7, -0.3, 0.3], dtype=theta.dtype)  # near the data's fit
    rows, mask = _group(model, 7)
    draws, log_q = model.local_proposal(theta, rows, mask, 8, torch.Generator().manual_seed(5))
    log_w = (model.log_likelihood(theta[:, None], draws[:, :, None], rows[None, None, None], mask[None, None, None])[..., 0]
             + model.local_log_prior(theta, draws) - log_q)
    estimate = (torch.logsumexp(log_w, -1) - math.log(8)).numpy()
    X, y = rows[:, :5].numpy(), rows[:, -1].numpy()
    for s in range(4):
        b, sd = theta[s, :5].numpy(), theta[s, 5].item()

        r = np.linspace(-12 * sd, 12 * sd, 200_001)  # a dense grid: the integrand is a narrow peak in a wide prior
        log_f = stats.poisson.logpmf(y[None], np.exp((X @ b)[None] + r[:, None])).sum(1) + stats.norm.logpdf(r, 0, sd)
        exact = special.logsumexp(log_f) + math.log(r[1] - r[0])
        # 8 draws from a near-exact proposal: the log estimate within a few hundredths
        assert estimate[s] == pytest.approx(exact, abs=0.05)


def test_pilot_and_summary_columns_travel_with_a_saved_amortizer_and_bad_columns_are_refused(tmp_path):
    import dataclasses

    from amortbayes.amortizers import MultilevelAmortizer
    from amortbayes.formula.fit import network_settings
    from amortbayes.io import load, save

    model = FormulaModel(parse_terms("count ~ zAge + zBase * Trt + (1 | patient)", load_epilepsy()), "poisson")
    settings = network_settings(model)
    assert settings.pilot.family == "poisson" and settings.pilot.parameters == (0, 1, 2, 3, 4)
    assert [model.data_names[i] for i in settings.summary_columns] == [
        "X:zAge", "X:zBase", "X:Trt", "X:zBase:Trt", "log1p(count)", "count"]
    amortizer = MultilevelAmortizer(model, settings)
    amortizer.adapt(model.simulate(64, torch.Generator().manual_seed(0)))
    save(amortizer, tmp_path)
    back = load(tmp_path, model=model)
    assert back.settings == settings
    data = model.observed_frame()
    a = amortizer.sample_draws(data, 5, seed=1, group="patient").global_draws
    np.testing.assert_array_equal(a, back.sample_draws(data, 5, seed=1, group="patient").global_draws)
    with pytest.raises(ValueError, match="summary_columns must be data columns 0..7"):
        MultilevelAmortizer(model, dataclasses.replace(settings, summary_columns=(0, 9)))


def test_the_student_proposal_has_heavy_tails_and_integrates_a_group_as_quadrature_does():
    # a student likelihood is bounded in r: the group's conditional keeps the prior's tails, which
    # a Gaussian at the mode would not cover; the t proposal's estimate is unbiased against quadrature
    model = FormulaModel(parse_terms("Reaction ~ Days + (1 | Subject)", load_sleepstudy()), "student")
    theta = torch.tensor([[251.0, 10.5, 40.0, 25.0, 4.0]], dtype=torch.float64).expand(200, -1)
    rows, mask = _group(model, 8)  # subject 332, whose reaction times have an outlier
    draws, log_q = model.local_proposal(theta, rows, mask, 32, torch.Generator().manual_seed(7))
    log_w = (model.log_likelihood(theta[:, None], draws[:, :, None], rows[None, None, None], mask[None, None, None])[..., 0]
             + model.local_log_prior(theta, draws) - log_q)
    estimates = torch.logsumexp(log_w, -1) - math.log(32)
    X, y = rows[:, :2].numpy(), rows[:, -1].numpy()
    r = np.linspace(-400, 400, 400_001)
    log_f = stats.t.logpdf(y[None], 4.0, (X @ theta[0, :2].numpy())[None] + r[:, None], 25.0).sum(1) \
        + stats.norm.logpdf(r, 0, 40.0)
    exact = special.logsumexp(log_f) + math.log(r[1] - r[0])
    # the mean of 200 independent estimates of the likelihood (not its log) is unbiased
    assert special.logsumexp(estimates.numpy()) - math.log(200) == pytest.approx(exact, abs=0.02)
    z = (draws[..., 0] - draws[..., 0].mean()) / draws[..., 0].std()
    assert (z.abs() > 4).float().mean() > 1e-4  # tails a Gaussian proposal would almost never reach
