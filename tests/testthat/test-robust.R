test_that("a fit trained with fim_trace() reports its robustness per radius", {
  skip_without_python()
  fit <- amortize(Reaction ~ Days + (Days | Subject), data = sleep_data(), budget = 40, method = "amortized",
                  draws = 100, seed = 1, regularizer = fim_trace(0.1))
  rob <- robustness(fit, eps = c(0.5, 1), nsims = 5)
  expect_equal(rob$eps, c(0, 0.5, 1))
  expect_true(all(c("kl_mean", "kl_median", "coverage_50", "coverage_90", "coverage_error") %in% names(rob)))
  expect_equal(rob$kl_mean[1], 0)
  expect_true(all(rob$kl_mean[-1] > 0))
  expect_error(robustness(fit, eps = c(0.5, -1)), "eps must be positive numbers")
  expect_error(robustness(fit, norm = "l1"), "should be one of")
})

test_that("robustness needs rows, and bad regularizers are named", {
  expect_error(fim_trace(-1), "beta must be one finite number >= 0")
  expect_error(fim_trace(0.1, every = 0), "every must be a positive whole number")
  expect_error(amortize(Reaction ~ Days + (Days | Subject), data = data.frame(Reaction = 1, Days = 1, Subject = "a"),
                        regularizer = 0.1), "regularizer must be NULL or fim_trace")
  skip_without_python()
  expect_error(robustness(tiny_fit(), eps = 0.5, nsims = 3), "group_data='rows'")
})
