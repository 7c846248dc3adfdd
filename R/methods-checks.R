# Checks of an amortized fit: leave-one-group-out, SBC, Stan and brms side by side; saving.

#' Leave-one-group-out cross-validation without refits
#'
#' The expected log predictive density of every level of the grouping factor given the
#' others, from the same amortizer (no refits), with its Monte Carlo standard error.
#'
#' @param object An `amortfit`.
#' @param ndraws Global draws per left-out group.
#' @param seed Seed.
#' @param ... Unused.
#' @return A data frame: group, elpd, mc_se, q10, q90.
#' @export
logo <- function(object, ...) UseMethod("logo")

#' @rdname logo
#' @export
logo.amortfit <- function(object, ndraws = 1000, seed = 0, ...) {
  py_call("logo", object$py, ndraws, seed)
}

#' Simulation-based calibration of an amortized fit
#'
#' Simulates data sets from the fit's own model (over the designs it was trained on), draws
#' their posteriors from the network, and checks the ranks of the true values against 99%
#' simultaneous ECDF bands (Säilynoja et al. 2022). `plot()` shows the ECDF differences.
#'
#' @param object An `amortfit`.
#' @param n_sims Simulated data sets.
#' @param n_draws Posterior draws per data set.
#' @param seed Seed.
#' @param ... Unused.
#' @return An object of class `amortbayes_sbc`: `table` (one row per parameter, with
#'   `passed`), `passed` (all inside their bands).
#' @export
sbc <- function(object, ...) UseMethod("sbc")

#' @rdname sbc
#' @export
sbc.amortfit <- function(object, n_sims = 200, n_draws = 200, seed = 2024, ...) {
  structure(py_call("sbc", object$py, n_sims, n_draws, seed), class = "amortbayes_sbc")
}

#' @rdname sbc
#' @param x An `amortbayes_sbc`.
#' @export
print.amortbayes_sbc <- function(x, ...) {
  cat(sprintf("SBC: %s (%d%% simultaneous bands)\n", if (isTRUE(x$passed)) "passed" else "FAILED",
              round(100 * (1 - x$alpha))))
  print(x$table[, c("level", "parameter", "max_abs_ecdf_diff", "passed")], row.names = FALSE)
  invisible(x)
}

#' @rdname sbc
#' @export
plot.amortbayes_sbc <- function(x, ...) {
  params <- x$table$parameter
  n <- length(params)
  cols <- ceiling(sqrt(n))
  old <- graphics::par(mfrow = c(ceiling(n / cols), cols), mar = c(3, 3, 2, 1), mgp = c(1.8, 0.6, 0))
  on.exit(graphics::par(old))
  diff <- as.matrix(x$ecdf_diff)
  for (j in seq_len(n)) {
    lim <- range(c(x$lower, x$upper, diff[, j]))
    graphics::plot(x$z, diff[, j], type = "n", ylim = lim, xlab = "fractional rank",
                   ylab = "ECDF difference", main = params[j], cex.main = 0.9)
    graphics::polygon(c(x$z, rev(x$z)), c(x$lower, rev(x$upper)), col = "grey85", border = NA)
    graphics::abline(h = 0, col = "grey40")
    graphics::lines(x$z, diff[, j], col = if (isTRUE(x$table$passed[j])) "steelblue4" else "firebrick", lwd = 1.5)
  }
  invisible(x)
}

#' The same model fitted by Stan, beside the amortized posterior
#'
#' Fits [make_stancode()]'s program (the same priors and likelihood) with Stan through the
#' Python side (cmdstanpy or pystan) and compares posterior means (in Stan posterior SDs)
#' and SDs per parameter.
#'
#' @param object An `amortfit`.
#' @param chains,warmup,draws Stan's sampler settings.
#' @param file Keep Stan's fit in this `.npz` file and read it back next time.
#' @param ... Unused.
#' @return A data frame, one row per parameter; attribute `stan` with Stan's seconds, largest
#'   R-hat and divergences.
#' @export
compare_stan <- function(object, ...) UseMethod("compare_stan")

#' @rdname compare_stan
#' @export
compare_stan.amortfit <- function(object, chains = 4, warmup = 1000, draws = 1000, file = NULL, ...) {
  r <- py_call("compare_stan", object$py, chains, warmup, draws, NULL, if (is.null(file)) NULL else path.expand(file))
  structure(r[[1]], stan = r[[2]])
}

#' The same model fitted by brms, beside the amortized posterior
#'
#' Fits `brms::brm()` with the fit's formula, family and the priors amortbayes used (its
#' [default_prior()] table with the user's statements in place) and compares posterior means
#' (in brms posterior SDs) and SDs per global parameter.
#'
#' @param object An `amortfit`.
#' @param chains,iter,seed Passed to `brms::brm()`.
#' @param file Passed to `brms::brm()` (a stored fit is read back).
#' @param ... Passed to `brms::brm()`.
#' @return A data frame, one row per parameter; attribute `brmsfit` with the brms fit and
#'   `seconds` with its wall time (compilation and sampling).
#' @export
compare_brms <- function(object, ...) UseMethod("compare_brms")

#' @rdname compare_brms
#' @export
compare_brms.amortfit <- function(object, chains = 4, iter = 2000, seed = 1, file = NULL, ...) {
  if (!requireNamespace("brms", quietly = TRUE)) {
    stop("amortbayes: compare_brms() needs the R package brms", call. = FALSE)
  }
  brm_fit <- brms_fit(object, chains = chains, iter = iter, seed = seed, file = file, ...)
  reference <- as.data.frame(posterior::as_draws_df(brm_fit$fit))
  table <- py_call("compare_draws", object$py, reference[, !startsWith(names(reference), "."), drop = FALSE])
  structure(table, brmsfit = brm_fit$fit, seconds = brm_fit$seconds)
}

#' The brms priors of an amortized fit
#'
#' The priors amortbayes used, as a brms prior table (`brms::set_prior()` rows), so that
#' `brms::brm()` fits the same model.
#'
#' @param object An `amortfit`.
#' @return A `brmsprior` data frame.
#' @export
brms_prior <- function(object) {
  if (!requireNamespace("brms", quietly = TRUE)) {
    stop("amortbayes: brms_prior() needs the R package brms", call. = FALSE)
  }
  table <- default_prior(object$formula, object$data, object$family, object$prior)
  rows <- lapply(seq_len(nrow(table)), function(i) {
    brms::set_prior(table$prior[i], class = table$class[i], coef = table$coef[i], group = table$group[i])
  })
  do.call(rbind, rows)
}

brms_fit <- function(object, chains, iter, seed, file, ...) {
  start <- proc.time()[["elapsed"]]
  fit <- brms::brm(stats::as.formula(object$formula), data = object$data, family = brms::brmsfamily(object$family),
                   prior = brms_prior(object), chains = chains, iter = iter, seed = seed, file = file,
                   refresh = 0, silent = 2, ...)
  list(fit = fit, seconds = proc.time()[["elapsed"]] - start)
}

#' Save and load a trained amortized fit
#'
#' `save_amortizer()` writes the trained amortizer, the formula, family, priors and data to
#' a folder; `load_amortizer()` reads it back (no training) and draws the posterior again.
#'
#' @param object An `amortfit`.
#' @param path A folder.
#' @param draws,seed Posterior draws of the loaded fit and their seed.
#' @return `save_amortizer()`: the folder (invisibly); `load_amortizer()`: an `amortfit`.
#' @export
save_amortizer <- function(object, path) {
  if (!inherits(object, "amortfit")) stop("amortbayes: save_amortizer() takes an amortfit", call. = FALSE)
  invisible(py_call("save", object$py, path.expand(path)))
}

#' @rdname save_amortizer
#' @export
load_amortizer <- function(path, draws = 4000, seed = 0) {
  py <- py_call("load", path.expand(path), draws, seed)
  d <- py_call("describe", py)
  new_amortfit(py, d$formula, d$family, py_call("data_frame", py), NULL)
}
