"""Adversarial robustness of amortized posteriors: attacks, the FIM-trace regularizer and a robustness report.

* :func:`attack`: the perturbation of the data within a small ball (L2 or L-infinity, in
  standardized units) that moves the amortized posterior most (KL), by projected gradient ascent.
* :class:`FIMTrace`: ``fit(..., regularizer=FIMTrace(beta))`` adds ``beta * E_x tr(I_x)``, the
  trace of the Fisher information of ``q(theta | x)`` with respect to the data, to the loss
  (Glöckler et al. 2023); a regularized amortizer's posterior moves less under attacks.
* :func:`robustness_report`: KL and expected coverage of attacked posteriors over radii, on
  simulations, as a DataFrame and a plot; :func:`robustness_tradeoff` compares amortizers
  trained with different ``beta`` (accuracy against robustness).

Reference:
    Glöckler, Deistler & Macke (2023). Adversarial robustness of amortized Bayesian
    inference. ICML 2023.
"""

from amortbayes.robust.attack import NORMS, AttackResult, attack
from amortbayes.robust.fim import FIMTrace, fim_trace
from amortbayes.robust.report import RobustnessReport, robustness_report, robustness_tradeoff
from amortbayes.robust.targets import LinearGaussianPosterior, Target

__all__ = ["NORMS", "AttackResult", "FIMTrace", "LinearGaussianPosterior", "RobustnessReport", "Target", "attack",
           "fim_trace", "robustness_report", "robustness_tradeoff"]
