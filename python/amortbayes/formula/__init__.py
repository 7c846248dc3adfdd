"""brms-like formulas: formula + data -> design matrices with brms' names, families, proper priors, a model, a fit."""

from amortbayes.formula.fit import AmortizedFit, amortize, default_prior
from amortbayes.formula.families import FAMILIES, Family, get_family
from amortbayes.formula.priors import Prior, combine_priors, default_priors, prior, prior_table
from amortbayes.formula.stan import make_stancode, make_standata
from amortbayes.formula.terms import FormulaTerms, parse_terms

__all__ = ["AmortizedFit", "FAMILIES", "Family", "FormulaTerms", "Prior", "amortize", "combine_priors",
           "default_prior", "default_priors", "get_family", "make_stancode", "make_standata", "parse_terms", "prior",
           "prior_table"]
