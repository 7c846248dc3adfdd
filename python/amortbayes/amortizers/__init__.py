"""Amortizers: posterior (NPE), multilevel (two-level), joint (posterior + likelihood) and ensembles, one contract."""

from amortbayes.amortizers.base import Amortizer, summarize_draws
from amortbayes.amortizers.ensemble import ApproximatorGapWarning, EnsembleAmortizer, EnsembleSettings
from amortbayes.amortizers.joint import JointAmortizer, JointSettings, SimulationGapWarning, joint_sbc
from amortbayes.amortizers.joint_multilevel import MultilevelJointAmortizer, MultilevelJointSettings
from amortbayes.amortizers.multilevel import MultilevelAmortizer, MultilevelDraws, MultilevelSettings
from amortbayes.amortizers.posterior import PosteriorAmortizer, PosteriorSettings

# classes that amortbayes.io can save and rebuild from JSON
AMORTIZER_CLASSES = ("PosteriorAmortizer", "MultilevelAmortizer", "JointAmortizer", "MultilevelJointAmortizer",
                     "EnsembleAmortizer")

__all__ = [
    "AMORTIZER_CLASSES",
    "Amortizer",
    "ApproximatorGapWarning",
    "EnsembleAmortizer",
    "EnsembleSettings",
    "JointAmortizer",
    "JointSettings",
    "MultilevelAmortizer",
    "MultilevelDraws",
    "MultilevelJointAmortizer",
    "MultilevelJointSettings",
    "MultilevelSettings",
    "PosteriorAmortizer",
    "PosteriorSettings",
    "SimulationGapWarning",
    "joint_sbc",
    "summarize_draws",
]
