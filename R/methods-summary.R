# print, summary, fixef, ranef, coef, nobs, ngrps, formula, family: brms' layouts and shapes.

#' Summaries of an amortized fit in brms' layout
#'
#' `summary()` gives brms' blocks: group-level effects (sd and cor), population-level
#' effects and family parameters, each with Estimate, Est.Error and the 95% interval. Where
#' brms reports Rhat and ESS of its chains, amortbayes reports the Pareto k and the effective
#' sample size of the importance weights that corrected the draws (k below 0.7: reliable).
#'
#' @param object,x An `amortfit`.
#' @param ... Unused.
#' @return `summary()`: an object of class `summary.amortfit` (a list of data frames).
#' @export
summary.amortfit <- function(object, ...) {
  s <- py_call("summary", object$py)
  tidy <- function(t) {
    if (is.null(t)) return(NULL)
    rownames(t) <- t$parameter
    t$parameter <- NULL
    t
  }
  structure(list(fixed = tidy(s$population), random = tidy(s$group), spec_pars = tidy(s$family),
                 weights = s$weights, info = s$info), class = "summary.amortfit")
}

#' @rdname summary.amortfit
#' @param digits Digits to print.
#' @export
print.summary.amortfit <- function(x, digits = 2, ...) {
  i <- x$info
  cat(" Family:", i$family, "\n")
  cat("Formula:", i$formula, "\n")
  cat(sprintf("   Data: %d rows, %d levels of %s (Number of observations: %d)\n", as.integer(i$rows),
              as.integer(i$levels), i$group, as.integer(i$rows)))
  cat(sprintf("  Draws: %d, %s\n", as.integer(i$draws),
              if (i$method == "importance") "importance-corrected to the exact posterior" else "amortized (network)"))
  if (!is.null(x$weights) && nrow(x$weights)) {
    cat(sprintf("Weights: Pareto k = %.2f, ESS = %.0f%s\n", x$weights$pareto_k, x$weights$ess,
                if (isTRUE(x$weights$pareto_k > 0.7)) " (k > 0.7: do not trust these draws)" else ""))
  }
  block <- function(title, t) {
    if (is.null(t) || !nrow(t)) return(invisible())
    cat("\n", title, "\n", sep = "")
    print(round(t, digits))
  }
  if (!is.null(x$random)) {
    cat(sprintf("\nGroup-Level Effects: \n~%s (Number of levels: %d) \n", i$group, as.integer(i$levels)))
    print(round(x$random, digits))
  }
  block("Population-Level Effects: ", x$fixed)
  block("Family Specific Parameters: ", x$spec_pars)
  invisible(x)
}

#' @rdname summary.amortfit
#' @export
print.amortfit <- function(x, digits = 2, ...) {
  print(summary(x), digits = digits)
  invisible(x)
}

#' Population-level, group-level and per-level effects (brms' shapes)
#'
#' `fixef()`: a matrix with one row per coefficient and columns Estimate, Est.Error, Q2.5,
#' Q97.5. `ranef()` and `coef()`: a list named by the grouping factor holding an array
#' `[levels, statistic, coefficient]`, as brms returns them; `coef()` adds the population
#' effects to each level's.
#'
#' @param object An `amortfit`.
#' @param summary Must be `TRUE` (draws are in [posterior::as_draws_df()]).
#' @param ... Unused.
#' @name fixef.amortfit
#' @method fixef amortfit
#' @export
fixef.amortfit <- function(object, summary = TRUE, ...) {
  check_summary(summary)
  t <- py_call("fixef", object$py)
  m <- as.matrix(t[, c("Estimate", "Est.Error", "Q2.5", "Q97.5")])
  rownames(m) <- t$parameter
  m
}

#' @rdname fixef.amortfit
#' @method ranef amortfit
#' @export
ranef.amortfit <- function(object, summary = TRUE, ...) {
  check_summary(summary)
  per_level_array(object, "ranef")
}

#' @rdname fixef.amortfit
#' @export
coef.amortfit <- function(object, summary = TRUE, ...) {
  check_summary(summary)
  per_level_array(object, "coef")
}

check_summary <- function(summary) {
  if (!isTRUE(summary)) {
    stop("amortbayes: summary = FALSE is not supported; the draws are in posterior::as_draws_df(fit)", call. = FALSE)
  }
}

per_level_array <- function(object, what) {
  r <- py_call("per_level", object$py, what)
  values <- array(r$values, dim = dim(r$values),
                  dimnames = list(unlist(r$levels), unlist(r$stats), unlist(r$coefs)))
  stats::setNames(list(values), r$group)
}

describe <- function(object) py_call("describe", object$py)

#' @rdname fixef.amortfit
#' @export
nobs.amortfit <- function(object, ...) as.integer(describe(object)$nobs)

#' Number of levels of the grouping factor
#'
#' @param object An `amortfit`.
#' @param ... Unused.
#' @return A named list: the number of levels of the grouping factor.
#' @export
ngrps <- function(object, ...) UseMethod("ngrps")

#' @rdname ngrps
#' @export
ngrps.amortfit <- function(object, ...) lapply(describe(object)$ngrps, as.integer)

#' @rdname fixef.amortfit
#' @param x An `amortfit`.
#' @export
formula.amortfit <- function(x, ...) stats::as.formula(x$formula, env = globalenv())

#' @rdname fixef.amortfit
#' @export
family.amortfit <- function(object, ...) object$family
