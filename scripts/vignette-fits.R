# Regenerates vignettes/fits/: the trained amortizers, brms fits, Stan fits and timings that the
# vignettes read (they render in seconds from these; training and brms take most of an hour).
#
#   make vignette-fits        (= AMORTBAYES_PYTHON=.venv/bin/python Rscript scripts/vignette-fits.R)
#
# Every expensive step is timed here, in one run on one machine, and the times are stored with
# the fits (timings.rds); the vignettes also time the amortized steps again when they render.
suppressMessages({
  library(amortbayes)
  library(brms)
  library(lme4)
})
dir <- file.path("vignettes", "fits")
# a fresh run unless RESUME=true: then the steps already timed in timings.rds are read back
resume <- identical(Sys.getenv("RESUME"), "true") && file.exists(file.path(dir, "timings.rds"))
if (!resume) unlink(dir, recursive = TRUE)
dir.create(dir, recursive = TRUE, showWarnings = FALSE)
options(mc.cores = 2)
timings <- if (resume) readRDS(file.path(dir, "timings.rds")) else
  list(machine = paste(Sys.info()[["sysname"]], Sys.info()[["machine"]], parallel::detectCores(),
                       "cores; amortbayes on one torch thread, brms 4 chains on 2 cores"),
       date = format(Sys.time(), "%Y-%m-%d"))
# run a step and record its wall time under `key` (kept in timings.rds after every step)
elapsed <- function(key, expr) {
  start <- proc.time()[["elapsed"]]
  value <- force(expr)
  if (is.null(timings[[key]])) {
    timings[[key]] <<- proc.time()[["elapsed"]] - start
    saveRDS(timings, file.path(dir, "timings.rds"))
  }
  list(value = value, seconds = timings[[key]])
}

# (a) sleepstudy, and (c) its leave-one-subject-out comparison
slope <- elapsed("sleepstudy_amortize", amortize(Reaction ~ Days + (Days | Subject), sleepstudy, file = file.path(dir, "sleepstudy"),
                          progress = TRUE))
brm_slope <- elapsed("sleepstudy_brm", compare_brms(slope$value, file = file.path(dir, "sleepstudy_brm")))
intercept <- elapsed("sleepstudy_amortize_intercept", amortize(Reaction ~ Days + (1 | Subject), sleepstudy, file = file.path(dir, "sleepstudy_intercept"),
                              progress = TRUE))
brm_intercept <- compare_brms(intercept$value, file = file.path(dir, "sleepstudy_intercept_brm"))
kfold_file <- file.path(dir, "sleepstudy_kfold.rds")
if (!file.exists(kfold_file)) {
  kfold_slope <- elapsed("sleepstudy_kfold_18", brms::kfold(attr(brm_slope$value, "brmsfit"), folds = "grouped",
                                                            group = "Subject", K = 18))
  kfold_intercept <- brms::kfold(attr(brm_intercept, "brmsfit"), folds = "grouped", group = "Subject", K = 18)
  saveRDS(list(slope = kfold_slope$value, intercept = kfold_intercept), kfold_file)
}
timings$sleepstudy <- list(amortize = timings$sleepstudy_amortize, brm = timings$sleepstudy_brm,
                           kfold_18 = timings$sleepstudy_kfold_18, amortize_intercept = timings$sleepstudy_amortize_intercept)

# (b) radon: varying intercepts by county with floor and log uranium
radon <- amortbayes_data("radon")
rad <- elapsed("radon_amortize", amortize(log_radon ~ floor + log_uranium + (1 | county), radon, file = file.path(dir, "radon"),
                        progress = TRUE))
brm_rad <- elapsed("radon_brm", compare_brms(rad$value, file = file.path(dir, "radon_brm")))
timings$radon <- list(amortize = rad$seconds, brm = brm_rad$seconds)
saveRDS(timings, file.path(dir, "timings.rds"))

# (d) cbpp: a binomial GLMM
cb <- elapsed("cbpp_amortize", amortize(incidence | trials(size) ~ period + (1 | herd), cbpp, family = binomial(),
                       file = file.path(dir, "cbpp"), progress = TRUE))
brm_cb <- elapsed("cbpp_brm", compare_brms(cb$value, file = file.path(dir, "cbpp_brm")))
timings$cbpp <- list(amortize = cb$seconds, brm = brm_cb$seconds)

saveRDS(timings, file.path(dir, "timings.rds"))
str(timings)

# fixtures of the R tests (tests/testthat/test-brms.R): the sleepstudy fit, brms' summary and loo
fixtures <- file.path("tests", "testthat", "fixtures")
dir.create(fixtures, recursive = TRUE, showWarnings = FALSE)
unlink(file.path(fixtures, "sleepstudy_fit"), recursive = TRUE)
save_amortizer(slope$value, file.path(fixtures, "sleepstudy_fit"))
bf <- attr(brm_slope$value, "brmsfit")
s <- summary(bf)
est <- rbind(s$fixed[, c("Estimate", "Est.Error")], s$spec_pars[, c("Estimate", "Est.Error")])
# plain numbers (brms' summary columns may be pillar vectors, which write.csv cannot convert)
utils::write.csv(data.frame(lapply(est, as.numeric), row.names = rownames(est)),
                 file.path(fixtures, "brms_sleepstudy_summary.csv"))
saveRDS(brms::loo(bf), file.path(fixtures, "brms_sleepstudy_loo.rds"))
