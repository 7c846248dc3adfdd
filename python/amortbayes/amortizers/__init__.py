"""Amortizers: posterior (NPE) now; multilevel, joint and ensemble ones share the same contract."""

from amortbayes.amortizers.base import Amortizer, summarize_draws
from amortbayes.amortizers.multilevel import MultilevelAmortizer, MultilevelDraws, MultilevelSettings
from amortbayes.amortizers.posterior import PosteriorAmortizer, PosteriorSettings

# classes that amortbayes.io can save and rebuild from JSON
AMORTIZER_CLASSES = ("PosteriorAmortizer", "MultilevelAmortizer")

__all__ = [
    "AMORTIZER_CLASSES",
    "Amortizer",
    "MultilevelAmortizer",
    "MultilevelDraws",
    "MultilevelSettings",
    "PosteriorAmortizer",
    "PosteriorSettings",
    "summarize_draws",
]
