# Sensitivity analyses of an amortized fit: priorsense's power-scaling diagnostic, sweeps over contexts.

#' Declare a power-scaling context
#'
#' For `amortize(sensitivity = )`: the prior (or each observation's likelihood) raised to a
#' power `alpha` in `[low, high]` (priorsense's power-scaling), drawn log-uniformly per
#' simulated data set during training, so that one amortizer covers every power in the range.
#'
#' @param component `"prior"` or `"likelihood"`.
#' @param low,high The range of powers; it must hold 1 (the model as written).
#' @return A list(power, range) for `amortize(sensitivity = list(name = ...))`.
#' @examples
#' power_scale("prior")
#' @export
power_scale <- function(component = c("prior", "likelihood"), low = 0.5, high = 2) {
  component <- match.arg(component)
  if (!is.numeric(low) || !is.numeric(high) || length(low) != 1 || length(high) != 1 ||
      !(low > 0 && low <= 1 && high >= 1 && low < high && is.finite(high))) {
    stop("amortbayes: a power's range must hold 1 and lie in (0, Inf), got [", low, ", ", high, "]", call. = FALSE)
  }
  list(power = component, range = c(as.numeric(low), as.numeric(high)))
}

check_sensitivity <- function(sensitivity) {
  if (is.null(sensitivity)) return(invisible(NULL))
  if (!is.list(sensitivity) || is.null(names(sensitivity)) || any(!nzchar(names(sensitivity))) ||
      !all(vapply(sensitivity, function(s) is.list(s) && !is.null(s$power), logical(1)))) {
    stop("amortbayes: sensitivity must be a named list of power_scale() declarations, ",
         "e.g. list(alpha = power_scale(\"prior\"))", call. = FALSE)
  }
  invisible(sensitivity)
}

#' Power-scaling sensitivity of an amortized fit
#'
#' Priorsense's diagnostic (Kallioinen et al. 2023): how far each parameter's posterior moves
#' when the prior or the likelihood is raised to a power near 1, as the derivative of the
#' cumulative Jensen-Shannon distance, with priorsense's threshold 0.05 and diagnoses.
#' `method = "reweight"` reweights the fit's draws as priorsense reweights a brms fit (the
#' prior is brms' `lprior`: the population-level, group-level SD and correlation and family
#' parameters); `method = "amortized"` reads it from a fit trained with
#' `amortize(sensitivity = )`, from the network's density ratio between powers.
#'
#' @param x An `amortfit`.
#' @param method `"reweight"` or `"amortized"`.
#' @param ndraws Draws (amortized method).
#' @param seed Seed.
#' @param ... Unused.
#' @return A data frame: variable, prior, likelihood, diagnosis.
#' @export
powerscale_sensitivity <- function(x, ...) UseMethod("powerscale_sensitivity")

#' @rdname powerscale_sensitivity
#' @export
powerscale_sensitivity.amortfit <- function(x, method = c("reweight", "amortized"), ndraws = 4000, seed = 0, ...) {
  method <- match.arg(method)
  py_call("powerscale", x$py, method, ndraws, seed)
}

#' Posterior summaries over a sweep of power-scaling contexts
#'
#' For a fit trained with `amortize(sensitivity = )`: the global parameters' posterior mean,
#' SD and 5/50/95 % quantiles at every combination of the given context values, from one
#' batched pass of the network (the same base draws for every context, so curves are smooth).
#'
#' @param x An `amortfit` trained with contexts.
#' @param grid A named list of values, e.g. `list(alpha = exp(seq(log(0.5), log(2), length.out = 50)))`.
#' @param ndraws Draws per context.
#' @param seed Seed.
#' @param ... Unused.
#' @return A data frame with the context columns, variable, mean, sd, q5, q50, q95.
#' @export
sensitivity_sweep <- function(x, ...) UseMethod("sensitivity_sweep")

#' @rdname sensitivity_sweep
#' @export
sensitivity_sweep.amortfit <- function(x, grid, ndraws = 2000, seed = 0, ...) {
  if (!is.list(grid) || is.null(names(grid)) || !all(vapply(grid, is.numeric, logical(1)))) {
    stop("amortbayes: grid must be a named list of numeric vectors, e.g. list(alpha = c(0.5, 1, 2))", call. = FALSE)
  }
  py_call("sweep", x$py, lapply(grid, as.list), ndraws, seed)
}
