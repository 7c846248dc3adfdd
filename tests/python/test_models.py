"""Built-in models: closed-form posteriors and evidence, and the exact two-moons reference sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amortbayes.diagnostics import sbc_check
from amortbayes.models import ConjugateGaussian, GaussianLinearRegression, TwoMoons, example_data


def test_conjugate_evidence_matches_monte_carlo_over_the_prior():
    model = ConjugateGaussian(dim=2, prior_sd=1.5, noise_sd=0.8)
    x = np.random.default_rng(0).normal(0.4, 0.8, size=(6, 2))
    mu = np.random.default_rng(1).normal(0.0, 1.5, size=(400_000, 2))
    loglik = (-0.5 * ((x[None] - mu[:, None]) / 0.8) ** 2 - np.log(0.8 * np.sqrt(2 * np.pi))).sum((1, 2))
    mc = np.log(np.mean(np.exp(loglik - loglik.max()))) + loglik.max()
    assert model.log_evidence(x) == pytest.approx(mc, abs=0.02)


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
