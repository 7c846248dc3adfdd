"""Inference over a trained two-level amortizer's proposals: importance-corrected draws, group evidence, leave-one-group-out.

Modules: :mod:`~amortbayes.inference.evidence` (a group's evidence at global draws, each group's
parameters integrated out), :mod:`~amortbayes.inference.importance` (``importance_draws``) and
:mod:`~amortbayes.inference.logo` (``logo``, ``group_log_evidence``).  Each function takes the
amortizer (its networks give the proposals) and a ``model`` (its priors and likelihood, or
closed forms, give the target); ``MultilevelAmortizer``'s methods of the same names are these
functions.
"""
