test_that("a missing Python environment stops with a message that says how to set one up", {
  skip_if(!"amortbayes" %in% rownames(utils::installed.packages()), "amortbayes is not installed (a fresh R process loads it)")
  rscript <- file.path(R.home("bin"), "Rscript")
  out <- suppressWarnings(system2(rscript, c("-e", shQuote(paste0(
    "options(amortbayes.python = '/nonexistent/bin/python'); ",
    "tryCatch(amortbayes::amortize(y ~ x + (1 | g), data.frame(y = 1, x = 1, g = 'a')), ",
    "error = function(e) cat(conditionMessage(e)))"))), stdout = TRUE, stderr = TRUE))
  text <- paste(out, collapse = "\n")
  expect_match(text, "the Python interpreter '/nonexistent/bin/python' does not exist", fixed = TRUE)
  expect_match(text, "make setup", fixed = TRUE)
  expect_match(text, "options(amortbayes.python", fixed = TRUE)
})

test_that("Python's errors arrive as R errors with their message", {
  skip_without_python()
  d <- sleep_data()
  expect_error(amortize(Reaction ~ Dayz + (1 | Subject), data = d, budget = 2),
               "uses \\['Dayz'\\], not column\\(s\\) of the data")
  expect_error(amortize(Reaction ~ Days + (1 | Subject) + (1 | Days), data = d, budget = 2),
               "crossed group terms of \\['Days', 'Subject'\\] are not supported yet")
  expect_error(amortize(Reaction ~ Days + (1 | Subject/Days), data = d, budget = 2), "nested")
  expect_error(default_prior(Reaction ~ Days + (1 | Subject), d, prior = data.frame(prior = "normal(0, 1)",
                                                                                     class = "b", coef = "Dayz")),
               "Dayz")
})

test_that("unknown families, links and data are refused by name in R", {
  d <- data.frame(y = 1:3, x = 1:3, g = c("a", "a", "b"))
  expect_error(amortize(y ~ x + (1 | g), d, family = "gamma"), "unknown family 'gamma'")
  expect_error(amortize(y ~ x + (1 | g), d, family = poisson(link = "identity")),
               "family 'poisson' is supported with its link 'log' only")
  expect_error(amortize(y ~ x + (1 | g), as.matrix(d)), "data must be a data frame")
  expect_error(amortize(y ~ x + (1 | g), d, prior = "normal(0, 1)"), "prior must be brms' prior table")
})

test_that("rows with missing values are dropped with an R warning that counts them", {
  skip_without_python()
  d <- sleep_data()
  d$Reaction[c(3, 50, 51)] <- NA
  expect_warning(fit <- amortize(Reaction ~ Days + (1 | Subject), data = d, budget = 2, method = "amortized",
                                 draws = 20),
                 "Rows containing NAs were excluded from the model: 3 of 180")
  expect_equal(nobs(fit), 177L)
})

test_that("families arrive in every form brms users write them", {
  expect_equal(amortbayes:::family_name("poisson"), "poisson")
  expect_equal(amortbayes:::family_name(poisson()), "poisson")
  expect_equal(amortbayes:::family_name(gaussian), "gaussian")
  expect_equal(amortbayes:::family_name(binomial(), "s | trials(n) ~ x + (1 | g)"), "binomial")
  expect_equal(amortbayes:::family_name(binomial(), "y ~ x + (1 | g)"), "bernoulli")  # brms: trials(1)
  skip_if_not_installed("brms")
  expect_equal(amortbayes:::family_name(brms::student()), "student")
  expect_equal(amortbayes:::family_name(brms::negbinomial()), "negbinomial")
})
