library(testthat)
library(amortbayes)

test_check("amortbayes")
