"""Inference over trained amortizers' proposals: importance-corrected draws, evidence, leave-one-group-out, model comparison.

Modules: :mod:`~amortbayes.inference.evidence` (a group's evidence at global draws, each group's
parameters integrated out), :mod:`~amortbayes.inference.importance` (``importance_draws``) and
:mod:`~amortbayes.inference.logo` (``logo``, ``group_log_evidence``).  Each function takes the
amortizer (its networks give the proposals) and a ``model`` (its priors and likelihood, or
closed forms, give the target); ``MultilevelAmortizer``'s methods of the same names are these
functions.  :mod:`~amortbayes.inference.compare` (``compare_models``) ranks joint amortizers of
competing models on one data set by evidence and ELPD.
"""
