#' Amortized Bayesian multilevel model from a brms-style formula
#'
#' Builds the two-level model of `formula` and `data` (brms' names, priors and
#' parameterization), trains an amortized posterior for data like `data` (once, in minutes on
#' a CPU), and returns its posterior for `data`, importance-corrected to the exact posterior.
#' A second call with the same specification and `file` loads the stored fit instead of
#' training, like `brms::brm(file = )`.
#'
#' @param formula An lme4/brms formula with one grouping factor, such as
#'   `Reaction ~ Days + (Days | Subject)`; binomial responses as `successes | trials(n)` or
#'   `cbind(successes, failures)`.
#' @param data A data frame.
#' @param family `"gaussian"` (default), `"student"`, `"lognormal"`, `"bernoulli"`,
#'   `"binomial"`, `"poisson"` or `"negbinomial"`, as a string, a stats family (`poisson()`)
#'   or a brms family (`brms::student()`), each with its default link.
#' @param prior `NULL` (brms' data-scaled defaults, proper everywhere) or brms' prior table:
#'   `brms::prior(normal(0, 5), class = b)`, `brms::set_prior("normal(0, 5)", class = "b")`.
#' @param file A folder for the trained fit (see above), or `NULL`.
#' @param budget Training steps (`NULL`: the package default of 10,000).
#' @param method `"importance"` (draws corrected to the exact posterior, with Pareto k) or
#'   `"amortized"` (the network's draws; gaussian and lognormal group effects from
#'   their exact conditional given each global draw).
#' @param draws Number of posterior draws.
#' @param seed Seed of training and draws.
#' @param progress Show training progress.
#' @param sensitivity `NULL`, or contexts to train over for sensitivity analyses: a named list
#'   of [power_scale()] declarations, e.g. `list(alpha = power_scale("prior"))` (likelihood
#'   powers for the gaussian and student families). Then [sensitivity_sweep()] and
#'   `powerscale_sensitivity(fit, method = "amortized")` work from the network; the fit's own
#'   draws are of the model as written.
#' @param regularizer `NULL`, or [fim_trace()] for a network whose posterior resists small
#'   perturbations of the response (adversarial robustness; the groups' rows reach the
#'   networks, not their moments); [robustness()] measures it.
#' @return An object of class `amortfit`.
#' @examples
#' \dontrun{
#' fit <- amortize(Reaction ~ Days + (Days | Subject), data = lme4::sleepstudy)
#' summary(fit)
#' }
#' @export
amortize <- function(formula, data, family = "gaussian", prior = NULL, file = NULL, budget = NULL,
                     method = c("importance", "amortized"), draws = 4000, seed = 0, progress = interactive(),
                     sensitivity = NULL, regularizer = NULL) {
  method <- match.arg(method)
  check_data(data)
  check_sensitivity(sensitivity)
  check_regularizer(regularizer)
  text <- formula_text(formula)
  fam <- family_name(family, text)
  py <- py_call("fit", text, data, fam, prior_records(prior), budget, method, draws, seed, progress,
                if (is.null(file)) NULL else path.expand(file), sensitivity, unclass(regularizer))
  new_amortfit(py, text, fam, data, prior)
}

new_amortfit <- function(py, formula, family, data, prior) {
  structure(list(py = py, formula = formula, family = family, data = data, prior = prior), class = "amortfit")
}

check_data <- function(data) {
  if (!is.data.frame(data)) {
    stop("amortbayes: data must be a data frame, not ", class(data)[1], call. = FALSE)
  }
  invisible(data)
}

#' Default priors of a formula model
#'
#' The priors [amortize()] uses for `formula`, `data` and `family`: brms' data-scaled
#' student_t defaults for the intercept, group-level SDs and sigma, an autoscaled normal for
#' the coefficients (where brms' default is flat and amortization needs a proper prior), with
#' the statements of `prior` in their place; in the layout of brms' prior tables.
#'
#' @inheritParams amortize
#' @return A data frame with columns prior, class, coef, group, lb and source.
#' @export
default_prior <- function(formula, data, family = "gaussian", prior = NULL) {
  text <- formula_text(formula)
  py_call("prior_table", text, check_data(data), family_name(family, text), prior_records(prior))
}

#' Stan program and data of a formula model
#'
#' The Stan program that encodes exactly the priors and likelihood amortbayes simulates from,
#' and its data, in brms' parameterization.
#'
#' @param object An `amortfit`, or a formula (then `data`, `family` and `prior` as in
#'   [amortize()]).
#' @inheritParams amortize
#' @param ... Unused.
#' @return `make_stancode()`: the program as a character string (class `amortbayes_stancode`);
#'   `make_standata()`: a named list.
#' @export
make_stancode <- function(object, data = NULL, family = "gaussian", prior = NULL, ...) {
  model <- formula_model(object, data, family, prior)
  structure(py_call("stancode", model), class = c("amortbayes_stancode", "character"))
}

#' @rdname make_stancode
#' @export
make_standata <- function(object, data = NULL, family = "gaussian", prior = NULL, ...) {
  py_call("standata", formula_model(object, data, family, prior))
}

#' @export
print.amortbayes_stancode <- function(x, ...) {
  cat(x, sep = "\n")
  invisible(x)
}

formula_model <- function(object, data, family, prior) {
  if (inherits(object, "amortfit")) {
    return(reticulate::py_get_attr(object$py, "model"))
  }
  if (is.null(data)) stop("amortbayes: data is needed with a formula", call. = FALSE)
  text <- formula_text(object)
  py_call("model", text, check_data(data), family_name(family, text), prior_records(prior))
}

#' Data sets shipped with amortbayes
#'
#' The real data sets of the amortbayes Python package (exported from Debian's R packages,
#' with provenance): `"sleepstudy"`, `"radon"` (rstanarm: log radon, floor and log uranium
#' in 85 Minnesota counties), `"cbpp"`, `"epilepsy"`, `"exam"` (mlmRev: 4,059 pupils in 65
#' schools), `"contraception"` (mlmRev: 1,934 women in 60 districts), `"speed_acc"`,
#' `"chickweight"`.
#'
#' @param name The data set's name.
#' @return A data frame; grouping columns are character.
#' @export
amortbayes_data <- function(name) {
  py_call("dataset", name)
}
