# The Python side: finding the environment, calling the bridge, passing errors and warnings on.

.amortbayes <- new.env(parent = emptyenv())

#' The Python environment amortbayes runs in
#'
#' amortbayes is a thin layer over its Python package. The Python interpreter is taken, in
#' this order, from `options(amortbayes.python = )`, the environment variable
#' `AMORTBAYES_PYTHON`, `RETICULATE_PYTHON`, or whatever Python reticulate would use. It must
#' be set before the first call that needs Python (reticulate binds one interpreter per R
#' session). `make setup` in the amortbayes repository creates such an environment in
#' `.venv/`.
#'
#' @return The path of the Python interpreter in use (invisibly), after checking that the
#'   amortbayes Python package imports; an error that says how to set one up otherwise.
#' @examples
#' \dontrun{
#' options(amortbayes.python = "~/amortbayes/.venv/bin/python")
#' amortbayes_python()
#' }
#' @export
amortbayes_python <- function() {
  python_bridge()
  invisible(reticulate::py_config()$python)
}

python_bridge <- function() {
  if (!is.null(.amortbayes$bridge)) {
    return(.amortbayes$bridge)
  }
  wanted <- getOption("amortbayes.python", Sys.getenv("AMORTBAYES_PYTHON", ""))
  if (nzchar(wanted)) {
    wanted <- path.expand(wanted)
    if (!file.exists(wanted)) {
      stop(missing_python_message(sprintf("the Python interpreter '%s' does not exist", wanted)), call. = FALSE)
    }
    if (reticulate::py_available(initialize = FALSE) &&
        normalizePath(reticulate::py_config()$python, mustWork = FALSE) != normalizePath(wanted, mustWork = FALSE)) {
      stop(missing_python_message(sprintf(
        "this R session already uses the Python at '%s', not '%s'; restart R and set the option first",
        reticulate::py_config()$python, wanted)), call. = FALSE)
    }
    # RETICULATE_PYTHON first: reticulate would otherwise look at a pyproject.toml in the working directory
    Sys.setenv(RETICULATE_PYTHON = wanted)
    reticulate::use_python(wanted, required = TRUE)
  }
  found <- tryCatch(reticulate::py_module_available("amortbayes.formula.rbridge"), error = function(e) FALSE)
  if (!isTRUE(found)) {
    where <- tryCatch(reticulate::py_config()$python, error = function(e) "none found")
    stop(missing_python_message(sprintf("the Python at '%s' has no amortbayes package", where)), call. = FALSE)
  }
  .amortbayes$bridge <- reticulate::import("amortbayes.formula.rbridge", convert = FALSE)
  .amortbayes$bridge
}

missing_python_message <- function(problem) {
  paste0(
    "amortbayes needs its Python package, but ", problem, ".\n",
    "Set it up once: in the amortbayes repository run `make setup` (it creates .venv/ with the package), ",
    "then, before the first amortbayes call of an R session, point R at it:\n",
    "  options(amortbayes.python = \"/path/to/amortbayes/.venv/bin/python\")\n",
    "or set the environment variable AMORTBAYES_PYTHON to that path."
  )
}

# Call bridge function `name`; Python's warnings become R warnings, Python's exceptions R errors
# carrying the original message.
py_call <- function(name, ...) {
  bridge <- python_bridge()
  args <- lapply(list(...), one_row_columns)
  result <- tryCatch(
    do.call(bridge[[name]], args),
    error = function(e) stop(python_error_message(e), call. = FALSE)
  )
  parts <- reticulate::py_to_r(result)
  for (w in as_r(parts[[2]])) warning(w, call. = FALSE)
  as_r(parts[[1]])
}

# A one-row data frame as a list of one-element columns: reticulate 1.28 turns its columns into
# scalars, and pandas refuses a frame of scalars ("If using all scalar values, pass an index");
# the bridge builds the frame from the columns (rbridge._frame). Factors go as their labels.
one_row_columns <- function(x) {
  if (!is.data.frame(x) || nrow(x) != 1) return(x)
  lapply(x, function(column) list(if (is.factor(column)) as.character(column) else column))
}

python_error_message <- function(e) {
  text <- conditionMessage(e)
  lines <- strsplit(text, "\n", fixed = TRUE)[[1]]
  lines <- lines[nzchar(trimws(lines))]
  # reticulate puts the Python traceback around the exception; keep the exception's own lines
  hit <- grep("^[A-Za-z_.]*(Error|Exception|Warning)[A-Za-z_]*: ", lines)
  if (length(hit)) {
    first <- hit[length(hit)]
    rest <- lines[seq.int(first, length(lines))]
    rest <- rest[!grepl("^Run `reticulate::py_last_error\\(\\)`|^See `reticulate::py_last_error", rest)]
    text <- paste(rest, collapse = "\n")
  }
  paste0("amortbayes: ", text)
}

# Python values as R values, nested ones too (pandas frames inside dicts, numpy arrays), except
# objects R has no type for (a fit), which stay references; pandas' 0-based row names dropped
as_r <- function(x) {
  if (inherits(x, "python.builtin.object")) {
    return(x)  # the bridge converts what R needs (rbridge._plain); this is an object such as a fit
  }
  if (is.data.frame(x)) {
    if (identical(rownames(x), as.character(seq_len(nrow(x)) - 1L))) rownames(x) <- NULL
    return(x)
  }
  if (is.list(x) && !is.null(x[["__frame__"]])) {
    cols <- unlist(x[["__frame__"]])
    out <- as.data.frame(lapply(cols, function(c) unlist(x$columns[[c]])), stringsAsFactors = FALSE,
                         optional = TRUE)
    names(out) <- cols
    return(out)
  }
  if (is.list(x) && !is.null(x[["__array__"]])) {  # C order in, R's column-major out
    shape <- as.integer(unlist(x[["__array__"]]))
    a <- array(unlist(x$values), dim = rev(shape))
    return(if (length(shape) > 1) aperm(a, rev(seq_along(shape))) else a)
  }
  if (is.list(x) && !is.data.frame(x)) return(lapply(x, as_r))
  x
}
