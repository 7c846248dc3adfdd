// Multilevel AR(1) model with two covariates (Habermann et al. 2024, eq. 20-21;
// air traffic series). For group j and t = 1..T[j]:
//
//   y[j, t] ~ normal(alpha[j] + beta[j] * ylag[j, t] + gamma[j] * u[j, t]
//                    + delta[j] * w[j, t], sigma[j])
//
// with normal group distributions for alpha, beta, gamma, delta and log(sigma).
// Series are passed padded to T_max with their lengths T[j]; padded entries are
// never read. All group parameters are sampled non-centred (offset/multiplier).
data {
  int<lower=1> J;
  int<lower=1> T_max;
  array[J] int<lower=1, upper=T_max> T;
  array[J, T_max] real y;
  array[J, T_max] real ylag;
  array[J, T_max] real u;
  array[J, T_max] real w;
}
parameters {
  real mu_alpha;
  real<lower=0> sigma_alpha;
  real mu_beta;
  real<lower=0> sigma_beta;
  real mu_gamma;
  real<lower=0> sigma_gamma;
  real mu_delta;
  real<lower=0> sigma_delta;
  real mu_sigma;
  real<lower=0> sigma_sigma;
  vector<offset=mu_alpha, multiplier=sigma_alpha>[J] alpha;
  vector<offset=mu_beta, multiplier=sigma_beta>[J] beta;
  vector<offset=mu_gamma, multiplier=sigma_gamma>[J] gamma;
  vector<offset=mu_delta, multiplier=sigma_delta>[J] delta;
  vector<offset=mu_sigma, multiplier=sigma_sigma>[J] log_sigma;
}
model {
  mu_alpha ~ normal(0, 0.5);
  sigma_alpha ~ normal(0, 0.25);  // half-normal through the lower bound
  mu_beta ~ normal(0, 0.2);
  sigma_beta ~ normal(0, 0.15);
  mu_gamma ~ normal(0, 0.5);
  sigma_gamma ~ normal(0, 0.25);
  mu_delta ~ normal(0, 0.5);
  sigma_delta ~ normal(0, 0.25);
  mu_sigma ~ normal(-1, 0.5);
  sigma_sigma ~ normal(0, 1);

  alpha ~ normal(mu_alpha, sigma_alpha);
  beta ~ normal(mu_beta, sigma_beta);
  gamma ~ normal(mu_gamma, sigma_gamma);
  delta ~ normal(mu_delta, sigma_delta);
  log_sigma ~ normal(mu_sigma, sigma_sigma);

  for (j in 1:J) {
    y[j, 1:T[j]] ~ normal(alpha[j] + beta[j] * to_vector(ylag[j, 1:T[j]])
                          + gamma[j] * to_vector(u[j, 1:T[j]])
                          + delta[j] * to_vector(w[j, 1:T[j]]), exp(log_sigma[j]));
  }
}
generated quantities {
  vector[J] sigma = exp(log_sigma);
  // log p(y_j | alpha[j], beta[j], gamma[j], delta[j], sigma[j]), summed over group j
  vector[J] log_lik_group;
  for (j in 1:J) {
    log_lik_group[j] = normal_lpdf(y[j, 1:T[j]] | alpha[j] + beta[j] * to_vector(ylag[j, 1:T[j]])
                                   + gamma[j] * to_vector(u[j, 1:T[j]])
                                   + delta[j] * to_vector(w[j, 1:T[j]]), sigma[j]);
  }
}
