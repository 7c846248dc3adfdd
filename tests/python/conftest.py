"""Shared fixtures: small trained amortizers, reused across tests to keep the suite fast."""

from __future__ import annotations

import pytest
import torch

from amortbayes import FlowSettings, PosteriorAmortizer, PosteriorSettings, TrainSettings, fit
from amortbayes.models import ConjugateGaussian, GaussianLinearRegression

# small networks: one thread is as fast as two and immune to oversubscription
torch.set_num_threads(1)


def tiny_settings(**kw) -> PosteriorSettings:
    return PosteriorSettings(summary_dim=8, summary_hidden=16, flow=FlowSettings(layers=2, hidden=16), **kw)


def _short_training(model, learning_rate: float):
    """``(amortizer, history)`` after 1,500 steps x 128 data sets on the CPU (under a minute)."""
    amortizer = PosteriorAmortizer(model)
    settings = TrainSettings(epochs=10, iterations_per_epoch=150, batch_size=128, learning_rate=learning_rate)
    return amortizer, fit(amortizer, model, settings=settings, progress=False, seed=0)


@pytest.fixture(scope="session")
def gaussian_model() -> ConjugateGaussian:
    return ConjugateGaussian(dim=2, n_obs=(2, 40))


@pytest.fixture(scope="session")
def trained_gaussian(gaussian_model):
    """The conjugate Gaussian amortizer after the short CPU training the README promises."""
    return _short_training(gaussian_model, learning_rate=1e-3)


@pytest.fixture(scope="session")
def linear_model() -> GaussianLinearRegression:
    return GaussianLinearRegression(n_covariates=2)


@pytest.fixture(scope="session")
def trained_linear(linear_model):
    """The Gaussian linear regression after the short CPU training the README promises (< 1 minute)."""
    return _short_training(linear_model, learning_rate=4e-3)


@pytest.fixture(scope="session", params=["conjugate_gaussian", "gaussian_linear"])
def trained_closed_form(request):
    """``(amortizer, model)`` for each built-in model with a closed-form posterior."""
    if request.param == "conjugate_gaussian":
        return request.getfixturevalue("trained_gaussian")[0], request.getfixturevalue("gaussian_model")
    return request.getfixturevalue("trained_linear")[0], request.getfixturevalue("linear_model")


@pytest.fixture()
def untrained_gaussian(gaussian_model):
    return PosteriorAmortizer(gaussian_model, tiny_settings())
