"""amortbayes: amortized Bayesian inference; train once on simulations, draw posteriors in milliseconds."""

from amortbayes._version import __version__
from amortbayes.amortizers import (
    JointAmortizer,
    JointSettings,
    MultilevelAmortizer,
    MultilevelSettings,
    PosteriorAmortizer,
    PosteriorSettings,
    summarize_draws,
)
from amortbayes.formula import AmortizedFit, amortize, default_prior, prior
from amortbayes.inference.compare import compare_models
from amortbayes.io import load, save
from amortbayes.networks import FlowSettings
from amortbayes.simulation import Batch, FlatModel, ModelInfo, MultilevelModel, Simulator
from amortbayes.train import OverfittingWarning, TrainingDiverged, TrainSettings, fit

__all__ = [
    "AmortizedFit",
    "Batch",
    "FlatModel",
    "FlowSettings",
    "JointAmortizer",
    "JointSettings",
    "ModelInfo",
    "MultilevelAmortizer",
    "MultilevelModel",
    "MultilevelSettings",
    "OverfittingWarning",
    "PosteriorAmortizer",
    "PosteriorSettings",
    "Simulator",
    "TrainSettings",
    "TrainingDiverged",
    "__version__",
    "amortize",
    "compare_models",
    "default_prior",
    "fit",
    "load",
    "prior",
    "save",
    "summarize_draws",
]
