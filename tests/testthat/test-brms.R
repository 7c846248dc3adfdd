# The amortized posterior against brms' for sleepstudy with the same formula and priors:
# against a stored fixture of brm()'s summary (make vignette-fits writes both), and, when
# AMORTBAYES_SLOW=true, against a brm() fit made now.

test_that("the stored sleepstudy fit matches brms' summary within 0.1 posterior SD", {
  skip_without_python()
  fixture <- test_path("fixtures", "brms_sleepstudy_summary.csv")
  fit_dir <- test_path("fixtures", "sleepstudy_fit")
  skip_if_not(file.exists(fixture) && dir.exists(fit_dir), "fixtures not generated (make vignette-fits)")
  brms_summary <- utils::read.csv(fixture, row.names = 1)
  fit <- load_amortizer(fit_dir, draws = 4000, seed = 0)
  s <- summary(fit)
  ours <- rbind(s$fixed, s$spec_pars)[rownames(brms_summary), ]
  z <- abs(ours$Estimate - brms_summary$Estimate) / brms_summary$Est.Error
  names(z) <- rownames(brms_summary)
  expect_true(all(z < 0.1), info = paste(names(z), round(z, 3), collapse = ", "))
  expect_true(all(abs(ours$Est.Error / brms_summary$Est.Error - 1) < 0.15))
})

test_that("loo_compare compares an amortized fit with a brms fit's loo", {
  skip_without_python()
  skip_if_not_installed("loo")
  fixture <- test_path("fixtures", "brms_sleepstudy_loo.rds")
  fit_dir <- test_path("fixtures", "sleepstudy_fit")
  skip_if_not(file.exists(fixture) && dir.exists(fit_dir), "fixtures not generated (make vignette-fits)")
  brms_loo <- readRDS(fixture)
  ours <- suppressWarnings(loo::loo(load_amortizer(fit_dir)))
  cmp <- loo::loo_compare(list(amortized = ours, brms = brms_loo))
  expect_equal(sort(rownames(cmp)), c("amortized", "brms"))
  # the same model and data: the two ELPD estimates agree within a few SEs of their difference
  expect_lt(abs(cmp[2, "elpd_diff"]), 3 * max(cmp[2, "se_diff"], 1))
})

test_that("brm() of the same formula and priors gives the same posterior (slow)", {
  skip_if(Sys.getenv("AMORTBAYES_SLOW") != "true", "set AMORTBAYES_SLOW=true to fit brms (about 3 minutes)")
  skip_without_python()
  skip_if_not_installed("brms")
  fit_dir <- test_path("fixtures", "sleepstudy_fit")
  skip_if_not(dir.exists(fit_dir), "fixtures not generated (make vignette-fits)")
  cmp <- compare_brms(load_amortizer(fit_dir), chains = 4, iter = 2000, seed = 2)
  fixed <- cmp[cmp$parameter %in% c("b_Intercept", "b_Days", "sigma"), ]
  expect_true(all(abs(fixed$mean_diff_in_sd) < 0.1))
  group <- cmp[startsWith(cmp$parameter, "sd_") | startsWith(cmp$parameter, "cor_"), ]
  expect_true(all(abs(group$mean_diff_in_sd) < 0.25))
})
