# Export the real multilevel data sets shipped with amortbayes.
#
# Run once from the repository root:
#     Rscript python/amortbayes/data/export_data.R
#
# Needs R and the Debian packages r-cran-lme4, r-cran-rtdists,
# r-cran-rstanarm, r-cran-brms and r-cran-mlmrev (ChickWeight is in base R's
# 'datasets').  The script only reads data objects shipped with those
# packages; it fits nothing.  Output is deterministic (no randomness), so
# re-running it reproduces the CSVs and the sha256 sums recorded in
# PROVENANCE.md.  See PROVENANCE.md for the rationale
# of every subset/recoding decision.

args <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args[grepl("^--file=", args)])
out_dir <- if (length(file_arg) == 1) dirname(normalizePath(file_arg)) else "python/amortbayes/data"

write_out <- function(df, name) {
  path <- file.path(out_dir, name)
  # Plain ASCII CSV, "\n" line endings, no row names, no NA.
  stopifnot(!anyNA(df))
  # Fields are written unquoted, so no value may contain a comma or a quote.
  chr <- vapply(df, is.character, logical(1))
  stopifnot(!any(vapply(df[chr], function(x) any(grepl("[,\"]", x)), logical(1))))
  utils::write.csv(df, path, row.names = FALSE, quote = FALSE,
                   fileEncoding = "UTF-8", eol = "\n")
  cat(sprintf("wrote %-16s %5d rows x %2d cols\n", name, nrow(df), ncol(df)))
}

## 1. sleepstudy (lme4) ------------------------------------------------------
data("sleepstudy", package = "lme4")
sleep <- data.frame(
  Reaction = sleepstudy$Reaction,
  Days = as.integer(sleepstudy$Days),
  Subject = as.character(sleepstudy$Subject)
)
stopifnot(nrow(sleep) == 180, length(unique(sleep$Subject)) == 18)
write_out(sleep, "sleepstudy.csv")

## 2. speed_acc (rtdists): Wagenmakers et al. (2008), Experiment 1 ----------
## Subset used by Habermann et al. (2024), Sec. 3.2: "observations in the
## accuracy condition in trial block 4", all 17 subjects.  The paper states no
## further exclusion, so no trial is dropped; rtdists' own `censor` flag
## (uninterpretable response, rt < 0.18 s, rt > 3 s) is kept as a column.
data("speed_acc", package = "rtdists")
sa <- speed_acc[speed_acc$condition == "accuracy" & speed_acc$block == "4", ]
sa <- sa[order(as.integer(as.character(sa$id)), seq_len(nrow(sa))), ]
stopifnot(all(sa$response %in% c("word", "nonword")))  # no 'error' responses in this subset
speed <- data.frame(
  id = as.integer(as.character(sa$id)),
  trial = stats::ave(seq_len(nrow(sa)), sa$id, FUN = seq_along),
  block = as.integer(as.character(sa$block)),
  condition = as.character(sa$condition),
  stim = as.character(sa$stim),
  stim_cat = as.character(sa$stim_cat),
  frequency = as.character(sa$frequency),
  response = as.character(sa$response),
  rt = sa$rt,
  censor = as.integer(sa$censor),
  correct = as.integer(as.character(sa$response) == as.character(sa$stim_cat)),
  response_upper = as.integer(as.character(sa$response) == "word")
)
stopifnot(nrow(speed) == 1632, length(unique(speed$id)) == 17, all(table(speed$id) == 96))
write_out(speed, "speed_acc.csv")

## 3. radon (rstanarm): Minnesota radon, Gelman & Hill (2007) ----------------
data("radon", package = "rstanarm")
rad <- data.frame(
  log_radon = radon$log_radon,
  floor = as.integer(radon$floor),
  county = as.character(radon$county),
  log_uranium = radon$log_uranium
)
stopifnot(nrow(rad) == 919, length(unique(rad$county)) == 85)
write_out(rad, "radon.csv")

## 4. ChickWeight (base R datasets) -----------------------------------------
cw <- as.data.frame(datasets::ChickWeight)
chick <- data.frame(
  weight = as.numeric(cw$weight),
  Time = as.integer(cw$Time),
  Chick = as.integer(as.character(cw$Chick)),
  Diet = as.integer(as.character(cw$Diet))
)
stopifnot(nrow(chick) == 578, length(unique(chick$Chick)) == 50)
write_out(chick, "chickweight.csv")

## 5. cbpp (lme4): contagious bovine pleuropneumonia, Lesnoff et al. (2004) --
## Binomial GLMM check: incidence | trials(size) ~ period + (1 | herd).
data("cbpp", package = "lme4")
stopifnot(all(cbpp$incidence == round(cbpp$incidence)), all(cbpp$size == round(cbpp$size)))
cb <- data.frame(
  herd = as.character(cbpp$herd),
  incidence = as.integer(cbpp$incidence),
  size = as.integer(cbpp$size),
  period = as.character(cbpp$period)
)
stopifnot(nrow(cb) == 56, length(unique(cb$herd)) == 15, all(cb$incidence <= cb$size),
          sum(cb$incidence) == 99, sum(cb$size) == 842)
write_out(cb, "cbpp.csv")

## 6. epilepsy (brms): seizure counts, Thall & Vail (1990) ------------------
## Poisson/negbinomial GLMM check: count ~ zAge + zBase * Trt + (1 | patient).
## Trt is written as the integer 0 (placebo) / 1 (progabide), so that it
## enters a formula as a numeric indicator (same design as R's treatment
## coding of the brms factor).  Age and Base are left out: zAge and zBase are
## brms' scale(Age) and scale(Base) over the 236 rows.
data("epilepsy", package = "brms")
stopifnot(all(epilepsy$count == round(epilepsy$count)),
          isTRUE(all.equal(epilepsy$zAge, as.numeric(scale(epilepsy$Age)))),
          isTRUE(all.equal(epilepsy$zBase, as.numeric(scale(epilepsy$Base)))))
epi <- data.frame(
  count = as.integer(epilepsy$count),
  Trt = as.integer(as.character(epilepsy$Trt)),
  zAge = epilepsy$zAge,
  zBase = epilepsy$zBase,
  visit = as.integer(as.character(epilepsy$visit)),
  patient = as.character(epilepsy$patient),
  obs = as.character(epilepsy$obs)
)
stopifnot(nrow(epi) == 236, length(unique(epi$patient)) == 59,
          length(unique(epi$obs)) == 236, all(table(epi$patient) == 4),
          all(tapply(epi$Trt, epi$patient, function(x) length(unique(x))) == 1),
          sum(epi$count) == 1948)
write_out(epi, "epilepsy.csv")

## 7. Exam (mlmRev): inner-London exam scores, Goldstein et al. (1993) -------
## Gaussian varying-intercept-and-slope check:
## normexam ~ standLRT + (standLRT | school).  All rows, mlmRev's row order
## (grouped by school).  Factors written as their labels, R's labels kept
## (vr and intake contain spaces and "%", which the CSV allows: no comma, no
## quote).  `student` is an id within school, not unique across schools.
data("Exam", package = "mlmRev")
ex <- data.frame(
  school = as.character(Exam$school),
  student = as.character(Exam$student),
  normexam = Exam$normexam,
  standLRT = Exam$standLRT,
  sex = as.character(Exam$sex),
  schgend = as.character(Exam$schgend),
  type = as.character(Exam$type),
  vr = as.character(Exam$vr),
  intake = as.character(Exam$intake),
  schavg = Exam$schavg
)
stopifnot(nrow(ex) == 4059, length(unique(ex$school)) == 65,
          identical(levels(Exam$school), as.character(1:65)),
          !is.unsorted(as.integer(ex$school)),
          min(table(ex$school)) == 2, max(table(ex$school)) == 198,
          identical(levels(Exam$vr), c("bottom 25%", "mid 50%", "top 25%")),
          identical(levels(Exam$intake), c("bottom 25%", "mid 50%", "top 25%")),
          identical(levels(Exam$schgend), c("mixed", "boys", "girls")),
          identical(levels(Exam$sex), c("F", "M")), identical(levels(Exam$type), c("Mxd", "Sngl")),
          all(tapply(ex$vr, ex$school, function(v) length(unique(v))) == 1),
          all(tapply(ex$schavg, ex$school, function(v) length(unique(v))) == 1))
write_out(ex, "exam.csv")

## 8. Contraception (mlmRev): Bangladesh Fertility Survey --------------------
## Bernoulli GLMM check: use ~ age + urban + (urban | district).  All rows,
## mlmRev's row order (woman 1..1934, grouped by district).  `use` and
## `urban` are written as the integers 0 ("N") / 1 ("Y"), so that a formula
## uses them as a 0/1 response and a numeric indicator (the same design as
## R's treatment coding of mlmRev's factor `urban`, levels "N", "Y").
## `age` is mlmRev's centred age, unchanged.  District "54" does not occur.
data("Contraception", package = "mlmRev")
stopifnot(identical(levels(Contraception$use), c("N", "Y")),
          identical(levels(Contraception$urban), c("N", "Y")),
          identical(levels(Contraception$livch), c("0", "1", "2", "3+")),
          identical(levels(Contraception$district), as.character(setdiff(1:61, 54))))
con <- data.frame(
  district = as.character(Contraception$district),
  woman = as.character(Contraception$woman),
  use = as.integer(Contraception$use == "Y"),
  livch = as.character(Contraception$livch),
  age = Contraception$age,
  urban = as.integer(Contraception$urban == "Y")
)
stopifnot(nrow(con) == 1934, length(unique(con$district)) == 60,
          identical(con$woman, as.character(seq_len(1934))),
          !is.unsorted(as.integer(con$district)),
          min(table(con$district)) == 2, max(table(con$district)) == 118,
          sum(con$use) == 759, sum(con$urban) == 562)
write_out(con, "contraception.csv")
