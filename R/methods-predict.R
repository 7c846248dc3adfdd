# Predictions (brms' predict, fitted, posterior_predict, posterior_epred) and update(newdata =).

#' Posterior predictions of an amortized fit
#'
#' As brms: `posterior_predict()` gives a `draws x rows` matrix of responses drawn from the
#' posterior predictive, `posterior_epred()` their expected values, `predict()` and
#' `fitted()` their summaries. Rows of `newdata` with a level of the grouping factor the fit
#' has not seen get effects drawn from the population (brms' `sample_new_levels =
#' "gaussian"`).
#'
#' @param object An `amortfit`.
#' @param newdata A data frame, or `NULL` for the fit's own data.
#' @param allow_new_levels Allow levels of the grouping factor that the data did not have.
#' @param seed Seed of the predictive draws.
#' @param ... Unused.
#' @return A matrix.
#' @name predict.amortfit
#' @method posterior_predict amortfit
#' @export
posterior_predict.amortfit <- function(object, newdata = NULL, allow_new_levels = TRUE, seed = 0, ...) {
  py_call("predictions", object$py, "posterior_predict", newdata, seed, allow_new_levels)
}

#' @rdname predict.amortfit
#' @method posterior_epred amortfit
#' @export
posterior_epred.amortfit <- function(object, newdata = NULL, allow_new_levels = TRUE, seed = 0, ...) {
  py_call("predictions", object$py, "posterior_epred", newdata, seed, allow_new_levels)
}

#' @rdname predict.amortfit
#' @export
predict.amortfit <- function(object, newdata = NULL, allow_new_levels = TRUE, seed = 0, ...) {
  as_summary_matrix(py_call("predictions", object$py, "predict", newdata, seed, allow_new_levels))
}

#' @rdname predict.amortfit
#' @export
fitted.amortfit <- function(object, newdata = NULL, allow_new_levels = TRUE, seed = 0, ...) {
  as_summary_matrix(py_call("predictions", object$py, "fitted", newdata, seed, allow_new_levels))
}

as_summary_matrix <- function(t) {
  m <- as.matrix(t[, c("Estimate", "Est.Error", "Q2.5", "Q97.5")])
  rownames(m) <- NULL
  m
}

#' The posterior for new data of the same formula, without training
#'
#' brms' `update(fit, newdata = )`: the trained amortizer applied to new data of the same
#' formula (new groups, more or fewer rows), importance-corrected as before, in about a
#' second. A new formula, family or prior needs training: call [amortize()].
#'
#' @param object An `amortfit`.
#' @param newdata A data frame with the formula's variables.
#' @param draws Number of posterior draws.
#' @param seed Seed of the draws.
#' @param ... Anything else (a new formula, family or prior) is refused.
#' @return An `amortfit` for `newdata`.
#' @export
update.amortfit <- function(object, newdata, draws = 4000, seed = 0, ...) {
  extra <- list(...)
  if (length(extra)) {
    stop(sprintf("amortbayes: update() takes newdata only; %s would need training: call amortize()",
                 paste(names(extra), collapse = ", ")), call. = FALSE)
  }
  if (missing(newdata)) stop("amortbayes: update() needs newdata", call. = FALSE)
  check_data(newdata)
  new_amortfit(py_call("update", object$py, newdata, draws, seed), object$formula, object$family, newdata,
               object$prior)
}
