# R and Python build the same model: the R functions call the Python ones, so the Stan code,
# parameter names and draws of a seed must be identical to the Python package's own.

test_that("R and Python give the same Stan program, parameter names and draws", {
  skip_without_python()
  d <- sleep_data()
  py <- reticulate::import("amortbayes.formula", convert = TRUE)
  fm <- reticulate::import("amortbayes.formula.model", convert = TRUE)
  model <- fm$FormulaModel(py$parse_terms("Reaction ~ Days + (Days | Subject)", reticulate::r_to_py(d)))
  expect_equal(as.character(make_stancode(Reaction ~ Days + (Days | Subject), d)), py$make_stancode(model))
  fit <- amortize(Reaction ~ Days + (Days | Subject), data = d, budget = 10, method = "amortized", draws = 50,
                  seed = 3)
  pyfit <- py$amortize("Reaction ~ Days + (Days | Subject)", reticulate::r_to_py(d), budget = 10L,
                       method = "amortized", draws = 50L, seed = 3L, progress = FALSE)
  ours <- as.data.frame(posterior::as_draws_df(fit))
  theirs <- reticulate::import("amortbayes.formula.rbridge")$`_plain`(pyfit$draws())
  theirs <- amortbayes:::as_r(theirs)
  expect_equal(names(theirs), names(ours)[seq_along(theirs)])
  expect_equal(ours$b_Days, theirs$b_Days)
  expect_equal(unlist(model$parameter_names), names(ours)[1:6])
})
