# Adversarial robustness of an amortized fit: FIM-trace regularized training, attacks on simulated data.

#' Declare a FIM-trace regularizer
#'
#' For `amortize(regularizer = )`: training adds `beta` times the trace of the Fisher
#' information of the amortized posterior with respect to the response (Glöckler et al.
#' 2023), so that a small perturbation of the data cannot move the posterior far. Larger
#' `beta`: more robust, slightly less accurate (see [robustness()]).
#'
#' @param beta The weight of the trace, a number >= 0.
#' @param every,window The regularizer's gradient is recomputed every `every` steps and the
#'   mean of the last `window` is used (the paper's moving window; every 4 steps costs about
#'   1.4 times a plain training step; windows longer than 1 destabilized training at large `beta`).
#' @return A list for `amortize(regularizer = )`.
#' @examples
#' fim_trace(0.1)
#' @export
fim_trace <- function(beta, every = 4, window = 1) {
  if (!is.numeric(beta) || length(beta) != 1 || !is.finite(beta) || beta < 0) {
    stop("amortbayes: fim_trace's beta must be one finite number >= 0 (the weight of the FIM trace), got ",
         deparse(beta), call. = FALSE)
  }
  for (n in c("every", "window")) {
    v <- get(n)
    if (!is.numeric(v) || length(v) != 1 || v < 1 || v != round(v)) {
      stop("amortbayes: fim_trace's ", n, " must be a positive whole number, got ", deparse(v), call. = FALSE)
    }
  }
  structure(list(beta = as.numeric(beta), every = as.integer(every), window = as.integer(window)),
            class = "amortbayes_regularizer")
}

check_regularizer <- function(regularizer) {
  if (!is.null(regularizer) && !inherits(regularizer, "amortbayes_regularizer")) {
    stop("amortbayes: regularizer must be NULL or fim_trace(beta), not ", class(regularizer)[1], call. = FALSE)
  }
  invisible(regularizer)
}

#' Robustness of an amortized fit to adversarial perturbations of the response
#'
#' Simulates `nsims` data sets from the fitted model's prior predictive over the same design,
#' attacks each (the perturbation of the response of norm at most `eps`, in units of the
#' response's simulated SD, that moves the network's posterior most), and reports per radius
#' the KL between clean and attacked posteriors and the expected coverage of the attacked
#' posteriors (`eps = 0`: clean). Compare a fit trained with `regularizer = fim_trace(beta)`
#' with one trained without.
#'
#' @param x An `amortfit` trained with `group_data = "rows"` (any fit with a regularizer).
#' @param eps Radii, each > 0.
#' @param norm `"l2"` or `"linf"`.
#' @param nsims Simulated data sets.
#' @param seed Seed.
#' @param ... Unused.
#' @return A data frame: eps, norm, kl_mean, kl_median, kl_q90, coverage_50, coverage_90,
#'   coverage_error (negative: over-confident), nonfinite_draws.
#' @export
robustness <- function(x, ...) UseMethod("robustness")

#' @rdname robustness
#' @export
robustness.amortfit <- function(x, eps = c(0.1, 0.25, 0.5, 1), norm = c("l2", "linf"), nsims = 100, seed = 0, ...) {
  norm <- match.arg(norm)
  if (!is.numeric(eps) || length(eps) < 1 || any(!is.finite(eps)) || any(eps <= 0)) {
    stop("amortbayes: eps must be positive numbers (radii of the perturbation), got ", deparse(eps), call. = FALSE)
  }
  py_call("robustness", x$py, as.list(as.numeric(eps)), norm, nsims, seed)
}
