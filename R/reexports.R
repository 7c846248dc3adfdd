# Generics shared with brms and lme4, so that fixef(), ranef(), posterior_predict() and
# posterior_epred() dispatch on amortbayes and brms fits alike whichever package is attached.

#' @importFrom nlme fixef
#' @export
nlme::fixef

#' @importFrom nlme ranef
#' @export
nlme::ranef

#' @importFrom rstantools posterior_predict
#' @export
rstantools::posterior_predict

#' @importFrom rstantools posterior_epred
#' @export
rstantools::posterior_epred

#' @importFrom stats predict fitted update nobs formula family coef
NULL

# ngrps() is brms' and lme4's generic too: register the method for theirs when they load
#' @rawNamespace S3method(brms::ngrps, amortfit)
#' @rawNamespace S3method(lme4::ngrps, amortfit)
NULL
