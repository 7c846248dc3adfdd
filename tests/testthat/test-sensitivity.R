test_that("powerscale_sensitivity reweights a fit's draws in priorsense's layout", {
  skip_without_python()
  fit <- tiny_fit()
  ps <- powerscale_sensitivity(fit)
  expect_equal(names(ps), c("variable", "prior", "likelihood", "diagnosis"))
  expect_equal(ps$variable[1:2], c("b_Intercept", "b_Days"))
  expect_true(all(ps$prior >= 0) && all(ps$likelihood >= 0))
  expect_true(all(ps$diagnosis %in% c("-", "potential prior-data conflict", "potential strong prior / weak likelihood")))
  expect_error(sensitivity_sweep(fit, list(alpha = c(0.5, 1))), "trained without contexts")
})

test_that("a fit trained with contexts sweeps them and names bad values", {
  skip_without_python()
  fit <- amortize(Reaction ~ Days + (Days | Subject), data = sleep_data(), budget = 40, method = "amortized",
                  draws = 100, seed = 1, sensitivity = list(alpha = power_scale("prior"), beta = power_scale("likelihood")))
  sw <- sensitivity_sweep(fit, list(alpha = c(0.5, 1, 2)), ndraws = 100)
  expect_true(all(c("alpha", "beta", "variable", "mean", "sd", "q5", "q50", "q95") %in% names(sw)))
  expect_equal(sort(unique(sw$alpha)), c(0.5, 1, 2))
  expect_error(sensitivity_sweep(fit, list(alpha = 3)), "outside the trained range")
  ps <- powerscale_sensitivity(fit, method = "amortized", ndraws = 300)
  expect_equal(nrow(ps), 6L)
})

test_that("bad sensitivity declarations are named", {
  expect_error(power_scale("prior", 1.5, 2), "must hold 1")
  expect_error(amortize(Reaction ~ Days + (Days | Subject), data = data.frame(Reaction = 1, Days = 1, Subject = "a"),
                        sensitivity = list(power_scale("prior"))), "named list of power_scale")
})
