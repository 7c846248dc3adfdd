"""Built-in generative models, one file each, and a registry to build them by name."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from amortbayes.models.ar1 import AR1Multilevel
from amortbayes.models.conjugate_gaussian import ConjugateGaussian
from amortbayes.models.ddm import HierarchicalDDM
from amortbayes.models.full_ddm import FullDDM
from amortbayes.models.gaussian_linear import GaussianLinear
from amortbayes.models.hierarchical_gaussian import HierarchicalGaussian
from amortbayes.models.hierarchical_linear import HierarchicalLinear
from amortbayes.models.linear_regression import GaussianLinearRegression
from amortbayes.models.two_moons import TwoMoons

MODELS: dict[str, type] = {
    "ar1_multilevel": AR1Multilevel,
    "conjugate_gaussian": ConjugateGaussian,
    "gaussian_linear": GaussianLinearRegression,
    "gaussian_linear_vector": GaussianLinear,
    "ddm": HierarchicalDDM,
    "full_ddm": FullDDM,
    "hierarchical_gaussian": HierarchicalGaussian,
    "hierarchical_linear": HierarchicalLinear,
    "two_moons": TwoMoons,
}


def get_model(name: str, **config: Any):
    """Build a built-in model by its registry name, e.g. ``get_model("two_moons")``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; built-in models are {sorted(MODELS)}")
    try:
        return MODELS[name](**config)
    except TypeError as err:
        raise ValueError(f"bad settings for model {name!r}: {err}") from err


def example_data(model: Any, seed: int = 2024) -> tuple[np.ndarray, np.ndarray]:
    """A fixed observation of ``model`` with its true parameters: ``(theta (D,), x (N, F))``.

    The data set has the largest trained size and is the same on every machine, so demos
    and documentation show reproducible numbers.
    """
    gen = torch.Generator().manual_seed(seed)
    theta = model.sample_prior(1, gen)
    x = model.simulate_data(theta, model.n_obs[1], gen)
    return theta[0].numpy(), x[0].numpy()


def simulated_data_sets(model: Any, n: int, seed: int = 7) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` held-out data sets of a single-level ``model``: ``(theta (1, D), x (N, F))`` each, ``N`` uniform in ``n_obs``.

    Example:
        >>> sets = simulated_data_sets(ConjugateGaussian(dim=1, n_obs=(5, 9)), 3)
        >>> len(sets), sets[0][0].shape, 5 <= len(sets[0][1]) <= 9
        (3, (1, 1), True)
    """
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        theta = model.sample_prior(1, gen)
        size = int(torch.randint(model.n_obs[0], model.n_obs[1] + 1, (1,), generator=gen))
        out.append((theta.numpy(), model.simulate_data(theta, size, gen)[0].numpy()))
    return out


__all__ = ["AR1Multilevel", "ConjugateGaussian", "FullDDM", "GaussianLinear", "HierarchicalDDM", "GaussianLinearRegression", "HierarchicalGaussian", "HierarchicalLinear", "MODELS", "TwoMoons", "example_data", "get_model", "simulated_data_sets"]
