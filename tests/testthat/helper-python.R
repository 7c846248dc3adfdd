# The tests need the amortbayes Python package: make test sets AMORTBAYES_PYTHON to the project's
# .venv; without one they skip with a reason.
python_ready <- function() {
  ok <- tryCatch({
    amortbayes_python()
    TRUE
  }, error = function(e) FALSE)
  ok
}

skip_without_python <- function() {
  if (!python_ready()) skip("no Python with the amortbayes package (set AMORTBAYES_PYTHON; make test does)")
}

sleep_data <- function() {
  if (!requireNamespace("lme4", quietly = TRUE)) skip("lme4 is not installed")
  lme4::sleepstudy
}

# one tiny fit shared by the tests of a file: 40 training steps, the network's draws
tiny_fit <- local({
  cache <- NULL
  function() {
    if (is.null(cache)) {
      cache <<- amortize(Reaction ~ Days + (Days | Subject), data = sleep_data(), budget = 40,
                         method = "amortized", draws = 200, seed = 1)
    }
    cache
  }
})
