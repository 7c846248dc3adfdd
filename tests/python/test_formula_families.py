"""Response families: log likelihoods equal scipy's densities, simulations have the closed-form moments, bad responses are named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from amortbayes.formula.families import FAMILIES, get_family

ETA = torch.tensor([-0.7, 0.0, 1.3], dtype=torch.float64)
DP = {"sigma": torch.tensor(0.8, dtype=torch.float64), "nu": torch.tensor(4.5, dtype=torch.float64),
      "shape": torch.tensor(2.5, dtype=torch.float64)}
TRIALS = torch.tensor([5.0, 9.0, 12.0], dtype=torch.float64)


def scipy_logpdf(name, y, eta):
    s, nu, phi = 0.8, 4.5, 2.5
    if name == "gaussian":
        return stats.norm.logpdf(y, eta, s)
    if name == "student":
        return stats.t.logpdf(y, nu, eta, s)
    if name == "lognormal":
        return stats.lognorm.logpdf(y, s, scale=np.exp(eta))
    if name == "bernoulli":
        return stats.bernoulli.logpmf(y, 1 / (1 + np.exp(-eta)))
    if name == "binomial":
        return stats.binom.logpmf(y, TRIALS.numpy(), 1 / (1 + np.exp(-eta)))
    if name == "poisson":
        return stats.poisson.logpmf(y, np.exp(eta))
    mu = np.exp(eta)
    return stats.nbinom.logpmf(y, phi, phi / (phi + mu))


Y = {"gaussian": [0.1, -2.0, 3.0], "student": [0.1, -2.0, 3.0], "lognormal": [0.2, 1.0, 7.5], "bernoulli": [0, 1, 1],
     "binomial": [0, 4, 12], "poisson": [0, 3, 11], "negbinomial": [0, 3, 11]}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_log_lik_is_scipys_density(name):
    y = torch.tensor(Y[name], dtype=torch.float64)
    got = get_family(name).log_lik(y, ETA, DP, trials=TRIALS).numpy()
    np.testing.assert_allclose(got, scipy_logpdf(name, y.numpy(), ETA.numpy()), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_simulations_have_the_closed_form_mean_and_variance(name):
    eta = ETA.repeat(200_000, 1)
    y = get_family(name).simulate(eta, DP, torch.Generator().manual_seed(1), trials=TRIALS).numpy()
    e = ETA.numpy()
    p, lam, s = 1 / (1 + np.exp(-e)), np.exp(e), 0.8
    mean, var = {
        "gaussian": (e, np.full(3, s**2)),
        "student": (e, np.full(3, s**2 * 4.5 / 2.5)),
        "lognormal": (np.exp(e + s**2 / 2), (np.exp(s**2) - 1) * np.exp(2 * e + s**2)),
        "bernoulli": (p, p * (1 - p)),
        "binomial": (TRIALS.numpy() * p, TRIALS.numpy() * p * (1 - p)),
        "poisson": (lam, lam),
        "negbinomial": (lam, lam + lam**2 / 2.5),
    }[name]
    np.testing.assert_allclose(y.mean(0), mean, rtol=0.02, atol=0.01)
    np.testing.assert_allclose(y.var(0), var, rtol=0.05, atol=0.01)


@pytest.mark.parametrize("name, y, trials, message", [
    ("gaussian", np.array(["a", "b"]), None, "family 'gaussian' needs a numeric response"),
    ("lognormal", np.array([1.0, 0.0]), None, "needs a positive response; 1 value"),
    ("bernoulli", np.array([0.0, 1.0, 2.0]), None, "response of 0s and 1s; 1 value"),
    ("poisson", np.array([1.0, -1.0]), None, "non-negative integer counts; 1 value"),
    ("negbinomial", np.array([1.0, 2.5]), None, "non-negative integer counts; 1 value"),
    ("binomial", np.array([3.0, 6.0]), np.array([5.0, 5.0]), "successes above trials in 1 row"),
    ("binomial", np.array([3.0]), None, r"trials\(n\)"),
])
def test_bad_responses_are_named(name, y, trials, message):
    with pytest.raises(ValueError, match=message):
        get_family(name).check_response(y, trials)


def test_unknown_family_lists_the_supported_ones():
    with pytest.raises(ValueError, match=r"unknown family 'gamma'; supported: \['gaussian'"):
        get_family("gamma")
