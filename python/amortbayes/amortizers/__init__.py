"""Amortizers: posterior (NPE) now; multilevel, joint and ensemble ones share the same contract."""

from amortbayes.amortizers.base import Amortizer, summarize_draws
from amortbayes.amortizers.posterior import PosteriorAmortizer, PosteriorSettings

# classes that amortbayes.io can save and rebuild from JSON
AMORTIZER_CLASSES = ("PosteriorAmortizer",)

__all__ = ["AMORTIZER_CLASSES", "Amortizer", "PosteriorAmortizer", "PosteriorSettings", "summarize_draws"]
