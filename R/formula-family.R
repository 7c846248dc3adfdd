# Families and priors as brms users write them, translated for the Python formula layer.

amortbayes_families <- c("gaussian", "student", "lognormal", "bernoulli", "binomial", "poisson", "negbinomial")
default_links <- c(gaussian = "identity", student = "identity", lognormal = "identity", bernoulli = "logit",
                   binomial = "logit", poisson = "log", negbinomial = "log")

# The family name the Python side knows, from a string, a function, a stats family or a brms family.
family_name <- function(family, formula = NULL) {
  if (is.function(family)) family <- family()
  if (is.character(family) && length(family) == 1) {
    name <- family
    link <- NULL
  } else if (is.list(family) && !is.null(family$family)) {
    name <- family$family
    link <- family$link
  } else {
    stop("amortbayes: family must be a family name such as \"gaussian\", a stats family such as poisson(), ",
         "or a brms family such as brms::student()", call. = FALSE)
  }
  name <- tolower(name)
  if (identical(name, "negative binomial") || startsWith(name, "negative binomial")) name <- "negbinomial"
  if (!name %in% amortbayes_families) {
    stop(sprintf("amortbayes: unknown family '%s'; amortbayes has %s", name,
                 paste(amortbayes_families, collapse = ", ")), call. = FALSE)
  }
  if (!is.null(link) && !identical(link, default_links[[name]])) {
    stop(sprintf("amortbayes: family '%s' is supported with its link '%s' only, not '%s'", name,
                 default_links[[name]], link), call. = FALSE)
  }
  # stats::binomial() on a 0/1 response without trials(): brms reads it as trials(1), i.e. bernoulli
  if (name == "binomial" && !is.null(formula) && !grepl("\\|", formula_lhs(formula)) &&
      !grepl("^\\s*cbind\\(", formula_lhs(formula))) {
    name <- "bernoulli"
  }
  name
}

formula_lhs <- function(formula) {
  text <- formula_text(formula)
  sub("~.*$", "", text)
}

# One line of formula text, as lme4/brms write it
formula_text <- function(formula) {
  if (inherits(formula, "brmsformula")) formula <- formula$formula
  if (inherits(formula, "formula")) {
    text <- paste(deparse(formula, width.cutoff = 500L), collapse = " ")
  } else if (is.character(formula) && length(formula) == 1) {
    text <- formula
  } else {
    stop("amortbayes: formula must be a formula such as Reaction ~ Days + (Days | Subject), or one string",
         call. = FALSE)
  }
  gsub("\\s+", " ", text)
}

# brms' prior tables (brms::prior(), set_prior(), c() of them) or any data frame with the columns
# prior, class, coef and group, as rows for the Python side (NULL: the defaults)
prior_records <- function(prior) {
  if (is.null(prior)) return(NULL)
  if (!is.data.frame(prior) || !all(c("prior", "class") %in% names(prior))) {
    stop("amortbayes: prior must be brms' prior table (brms::prior(), brms::set_prior()) or a data frame ",
         "with columns prior, class, coef and group", call. = FALSE)
  }
  cols <- c("prior", "class", "coef", "group")
  out <- as.data.frame(lapply(cols, function(c) if (c %in% names(prior)) as.character(prior[[c]]) else ""),
                       stringsAsFactors = FALSE)
  names(out) <- cols
  out[is.na(out)] <- ""
  # a list of records: reticulate would turn a one-row data frame's columns into scalars
  lapply(seq_len(nrow(out)), function(i) as.list(out[i, , drop = FALSE]))
}
