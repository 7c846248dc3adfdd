#' amortbayes: amortized Bayesian multilevel models from brms-style formulas
#'
#' [amortize()] trains a neural approximator once on simulations of the multilevel model of
#' an lme4/brms formula and returns its posterior for the data, importance-corrected to the
#' exact posterior; the methods of the result follow brms ([summary()][summary.amortfit],
#' [fixef()][fixef.amortfit], `as_draws_df()`, `loo()`, [predict()][predict.amortfit],
#' [update()][update.amortfit]). Every computation runs in the amortbayes Python package
#' (see [amortbayes_python()] for pointing R at it).
#'
#' @keywords internal
"_PACKAGE"
