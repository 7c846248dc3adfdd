"""amortbayes: amortized Bayesian inference; train once on simulations, draw posteriors in milliseconds."""

from amortbayes._version import __version__
from amortbayes.amortizers import (
    EnsembleAmortizer,
    EnsembleSettings,
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
from amortbayes.robust import FIMTrace, attack, robustness_report, robustness_tradeoff
from amortbayes.sensitivity import (
    choice,
    data_sensitivity,
    power_scale,
    powerscale_sensitivity,
    sensitivity_sweep,
)
from amortbayes.simulation import Batch, FlatModel, ModelInfo, MultilevelModel, Simulator
from amortbayes.train import OverfittingWarning, TrainingDiverged, TrainSettings, fit

__all__ = [
    "AmortizedFit",
    "EnsembleAmortizer",
    "EnsembleSettings",
    "FIMTrace",
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
    "attack",
    "choice",
    "data_sensitivity",
    "compare_models",
    "default_prior",
    "fit",
    "load",
    "power_scale",
    "powerscale_sensitivity",
    "prior",
    "robustness_report",
    "robustness_tradeoff",
    "save",
    "sensitivity_sweep",
    "summarize_draws",
]
