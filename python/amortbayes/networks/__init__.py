"""Summary networks (DeepSet, SetTransformer, recurrent, temporal convolution), nflows inference flows, standardization."""

from amortbayes.networks.flows import FlowSettings, build_flow, sample_flow
from amortbayes.networks.standardize import DataRange, ParameterMap, Standardizer
from amortbayes.networks.series import RecurrentSummary, TemporalConv
from amortbayes.networks.summary import DeepSet, SetTransformer, build_summary

__all__ = [
    "DataRange",
    "DeepSet",
    "FlowSettings",
    "ParameterMap",
    "RecurrentSummary",
    "SetTransformer",
    "Standardizer",
    "TemporalConv",
    "build_flow",
    "build_summary",
    "sample_flow",
]
