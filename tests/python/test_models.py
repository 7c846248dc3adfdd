"""Built-in models: closed-form posteriors and evidence, and the exact two-moons reference sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amortbayes.diagnostics import sbc_check
from amortbayes.models import (
    AR1Multilevel,
    ConjugateGaussian,
    GaussianLinearRegression,
    HierarchicalDDM,
    HierarchicalGaussian,
    HierarchicalLinear,
    TwoMoons,
    example_data,
)


def test_conjugate_evidence_matches_monte_carlo_over_the_prior():
    model = ConjugateGaussian(dim=2, prior_sd=1.5, noise_sd=0.8)
    x = np.random.default_rng(0).normal(0.4, 0.8, size=(6, 2))
    mu = np.random.default_rng(1).normal(0.0, 1.5, size=(400_000, 2))
    loglik = (-0.5 * ((x[None] - mu[:, None]) / 0.8) ** 2 - np.log(0.8 * np.sqrt(2 * np.pi))).sum((1, 2))
    mc = np.log(np.mean(np.exp(loglik - loglik.max()))) + loglik.max()
    assert model.log_evidence(x) == pytest.approx(mc, abs=0.02)


def test_hierarchical_linear_group_marginal_matches_monte_carlo_over_the_offsets():
    # log p(y_k | globals) = log E_{r ~ MVN(0, Sigma)} p(y_k | globals, r): 400,000 prior draws of
    # the offsets; one padded row must not count
    model = HierarchicalLinear()
    g = torch.Generator().manual_seed(0)
    theta = model.sample_global(3, g)
    rows = torch.tensor([[0.0, 250.0], [4.0, 300.0], [9.0, 330.0], [0.0, 0.0]])
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0])
    exact = model.group_log_marginal(theta, rows, mask)
    m = 400_000
    rep = theta.repeat_interleave(m, 0)
    offsets = model.sample_local(rep, 1, g)
    lik = model.log_likelihood(rep, offsets, rows.expand(len(rep), 1, 4, 2), mask.expand(len(rep), 1, 4))[:, 0]
    mc = torch.logsumexp(lik.reshape(3, m).double(), -1) - np.log(m)
    np.testing.assert_allclose(exact.numpy(), mc.numpy(), atol=0.03)
    assert not np.allclose(exact.numpy(), model.group_log_marginal(theta, rows, torch.ones(4)).numpy(), atol=1.0)


@pytest.mark.parametrize("model", [ConjugateGaussian(), GaussianLinearRegression()])
def test_closed_form_posteriors_are_calibrated(model):
    b = model.simulate(4000, torch.Generator().manual_seed(2))
    mean, sd = model.posterior(b["x"].numpy(), b["mask"].numpy())
    z = (b["theta_global"].numpy() - mean) / sd
    assert np.abs(z.mean(0)).max() < 0.06 and np.abs(z.std(0) - 1).max() < 0.04


def test_two_moons_reference_posterior_is_exact_by_sbc_and_bimodal():
    model = TwoMoons()
    b = model.simulate(200, torch.Generator().manual_seed(3))
    draws = np.stack([model.reference_posterior(x[0].numpy(), 100, seed=i) for i, x in enumerate(b["x"])])
    assert sbc_check(draws, b["theta_global"].numpy())["passed"].all()
    # one observation near the centre: both crescents (signs of theta1 + theta2) appear
    post = model.reference_posterior(np.zeros(2), 5000, seed=0)
    share = np.mean(post.sum(1) > 0)
    assert 0.35 < share < 0.65 and np.all(np.abs(post) <= 1)
    # a miscalibrated sampler fails the same check
    assert not sbc_check(draws * 0.5, b["theta_global"].numpy())["passed"].all()


def test_example_data_is_fixed():
    t1, x1 = example_data(GaussianLinearRegression())
    t2, x2 = example_data(GaussianLinearRegression())
    np.testing.assert_array_equal(x1, x2)
    assert x1.shape == (50, 3) and t1.shape == (3,)


def _mass_on_support(loc: torch.Tensor, scale: torch.Tensor, support: tuple[str, ...]) -> float:
    """Probability that independent Normal(loc, scale) draws land inside each parameter's support."""
    cdf = torch.distributions.Normal(0.0, 1.0).cdf
    lo = {"real": -np.inf, "positive": 0.0, "unit": 0.0, "correlation": -1.0}
    hi = {"real": np.inf, "positive": np.inf, "unit": 1.0, "correlation": 1.0}
    mass = 1.0
    for m, s, sup in zip(loc.tolist(), scale.tolist(), support):
        mass *= float(cdf(torch.tensor((hi[sup] - m) / s)) - cdf(torch.tensor((lo[sup] - m) / s)))
    return mass


@pytest.mark.parametrize("model", [HierarchicalLinear(), HierarchicalGaussian(), HierarchicalDDM(),
                                   HierarchicalDDM(bias="subject"), AR1Multilevel()], ids=lambda m: m.name)
def test_global_log_prior_is_the_normalized_density_sample_global_draws_from(model):
    # E_p[q / p] = the mass of q on p's support, for any density q: it checks the normalizing
    # constant, the support and the shape of global_log_prior against sample_global's draws
    theta = model.sample_global(400_000, torch.Generator().manual_seed(0)).double()
    loc, scale = theta.mean(0), theta.std(0)
    q = torch.distributions.Normal(loc, scale).log_prob(theta).sum(-1)
    ratio = torch.exp(q - model.global_log_prior(theta))
    support = model.info.parameter_support or ("real",) * theta.shape[1]
    assert float(ratio.mean()) == pytest.approx(_mass_on_support(loc, scale, support), rel=0.02)
    # a wrong density fails the same check: scales off by 20 % shift the mass
    assert not float(torch.exp(q - model.global_log_prior(theta) + 0.2 * theta.shape[1]).mean()) == pytest.approx(
        _mass_on_support(loc, scale, support), rel=0.02)


def test_hierarchical_linear_local_prior_is_the_bivariate_normal():
    model = HierarchicalLinear()
    theta = model.sample_global(64, torch.Generator().manual_seed(1))
    local = model.sample_local(theta, 5, torch.Generator().manual_seed(2))
    mvn = torch.distributions.MultivariateNormal(torch.zeros(2), scale_tril=model._scale_tril(theta)[:, None])
    torch.testing.assert_close(model.local_log_prior(theta, local), mvn.log_prob(local), atol=1e-4, rtol=1e-5)
