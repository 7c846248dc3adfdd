// The conjugate Gaussian model with its prior and likelihood power-scaled
// (priorsense's alpha and beta): the reference of the sensitivity contexts.
//
//   target = alpha * log N(mu | m0, s0) + beta * sum_i log f(y_i | mu, sigma),
//   f = normal (student = 0) or Student-t with nu degrees of freedom (student = 1).
//
// One component of amortbayes' ConjugateGaussian (each is independent).
data {
  int<lower=1> N;
  vector[N] y;
  real prior_mean;
  real<lower=0> prior_sd;
  real<lower=0> noise_sd;
  real<lower=0> alpha;
  real<lower=0> beta;
  int<lower=0, upper=1> student;
  real<lower=0> nu;
}
parameters {
  real mu;
}
model {
  target += alpha * normal_lpdf(mu | prior_mean, prior_sd);
  if (student == 1) {
    target += beta * student_t_lpdf(y | nu, mu, noise_sd);
  } else {
    target += beta * normal_lpdf(y | mu, noise_sd);
  }
}
