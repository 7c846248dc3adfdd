# Draws, LOO and posterior predictive checks in the formats of posterior, loo and bayesplot.

#' Posterior draws as a posterior draws_df
#'
#' Columns are named as `brms::as_draws_df()` names them (`b_Intercept`,
#' `sd_Subject__Intercept`, `cor_Subject__Intercept__Days`, `sigma`,
#' `r_Subject[308,Intercept]`), so summaries line up with a brms fit's.
#'
#' @param x An `amortfit`.
#' @param ... Unused.
#' @return A `draws_df` (one chain of independent draws).
#' @name as_draws_df.amortfit
#' @rawNamespace S3method(posterior::as_draws_df, amortfit)
as_draws_df.amortfit <- function(x, ...) {
  if (!requireNamespace("posterior", quietly = TRUE)) {
    stop("amortbayes: as_draws_df() needs the R package posterior", call. = FALSE)
  }
  d <- py_call("draws", x$py)
  posterior::as_draws_df(as.data.frame(d, check.names = FALSE, optional = TRUE))
}

#' Leave-one-out cross-validation (PSIS-LOO) of an amortized fit
#'
#' The pointwise log likelihood at the posterior draws (computed in Python) smoothed by the
#' loo package, so the result is a `loo` object that [loo::loo_compare()] compares with
#' brms fits of the same data.
#'
#' @param x An `amortfit`.
#' @param ... Passed to [loo::loo()].
#' @return A `psis_loo` object.
#' @name loo.amortfit
#' @rawNamespace S3method(loo::loo, amortfit)
loo.amortfit <- function(x, ...) {
  if (!requireNamespace("loo", quietly = TRUE)) {
    stop("amortbayes: loo() needs the R package loo", call. = FALSE)
  }
  ll <- py_call("log_lik", x$py)
  # resampled importance draws repeat: their relative efficiency is the weights' ESS per draw
  w <- summary_weights(x)
  r_eff <- if (is.null(w)) 1 else min(1, w$ess / nrow(ll))
  loo::loo(ll, r_eff = rep(r_eff, ncol(ll)), ...)
}

summary_weights <- function(x) {
  s <- py_call("summary", x$py)
  if (is.null(s$weights) || !nrow(s$weights)) NULL else s$weights
}

#' Posterior predictive checks with bayesplot
#'
#' @param object An `amortfit`.
#' @param type `"dens_overlay"` (default for continuous responses) or `"bars"` (default for
#'   counts and binary responses), as in `bayesplot::ppc_dens_overlay()` and `ppc_bars()`.
#' @param ndraws Number of posterior predictive draws shown.
#' @param seed Seed of the predictive draws.
#' @param ... Passed to the bayesplot function.
#' @return A ggplot object.
#' @name pp_check.amortfit
#' @rawNamespace S3method(bayesplot::pp_check, amortfit)
pp_check.amortfit <- function(object, type = NULL, ndraws = 50, seed = 0, ...) {
  if (!requireNamespace("bayesplot", quietly = TRUE)) {
    stop("amortbayes: pp_check() needs the R package bayesplot", call. = FALSE)
  }
  y <- py_call("response", object$py)$y
  yrep <- posterior_predict(object, seed = seed)
  yrep <- yrep[seq_len(min(ndraws, nrow(yrep))), , drop = FALSE]
  discrete <- object$family %in% c("bernoulli", "binomial", "poisson", "negbinomial")
  type <- if (is.null(type)) if (discrete) "bars" else "dens_overlay" else type
  fn <- switch(type, dens_overlay = bayesplot::ppc_dens_overlay, bars = bayesplot::ppc_bars,
               stop("amortbayes: pp_check type must be 'dens_overlay' or 'bars'", call. = FALSE))
  fn(y, yrep, ...)
}
