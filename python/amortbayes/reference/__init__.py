"""Stan reference fits (cmdstanpy or pystan backend) and side-by-side comparison with amortized draws."""

from amortbayes.reference.compare import compare_draws
from amortbayes.reference.convergence import ess_bulk, rhat, split_chains
from amortbayes.reference.stan import (
    BACKENDS,
    HIERARCHICAL_LINEAR_PRIORS,
    StanFit,
    available_backend,
    check_data,
    data_names,
    fit_stan,
    hierarchical_linear_data,
    known_programs,
    label_groups,
    normalize_draws,
    padded_groups,
    stan_program,
)

__all__ = [
    "BACKENDS",
    "HIERARCHICAL_LINEAR_PRIORS",
    "StanFit",
    "available_backend",
    "check_data",
    "compare_draws",
    "data_names",
    "ess_bulk",
    "fit_stan",
    "hierarchical_linear_data",
    "known_programs",
    "label_groups",
    "normalize_draws",
    "padded_groups",
    "rhat",
    "split_chains",
    "stan_program",
]
