// Varying intercepts and slopes with correlated group effects: the lme4
// `sleepstudy` design, brms `Reaction ~ Days + (Days | Subject)`.
//
//   y[j, i] ~ normal(b_Intercept + r_Intercept[j] + (b_x + r_x[j]) * x[j, i], sigma)
//   (r_Intercept[j], r_x[j]) ~ MVN(0, diag(sd) * Omega * diag(sd)),  Omega ~ lkj_corr(lkj_eta)
//
// Ragged groups are passed padded to N_max with their lengths N[j]; padded
// entries are never read. The group effects are sampled non-centred through
// the Cholesky factor of Omega (r = diag(sd) * L_Omega * z, z ~ std_normal).
data {
  int<lower=1> J;
  int<lower=1> N_max;
  array[J] int<lower=1, upper=N_max> N;
  array[J, N_max] real x;
  array[J, N_max] real y;
  // prior hyperparameters (defaults in the Python helpers: 250, 50, 10, 10, 40, 10, 50, 2)
  real b_Intercept_loc;
  real<lower=0> b_Intercept_scale;
  real b_x_loc;
  real<lower=0> b_x_scale;
  real<lower=0> sd_Intercept_scale;
  real<lower=0> sd_x_scale;
  real<lower=0> sigma_scale;
  real<lower=0> lkj_eta;
}
parameters {
  real b_Intercept;
  real b_x;
  real<lower=0> sd_Intercept;
  real<lower=0> sd_x;
  cholesky_factor_corr[2] L_Omega;
  real<lower=0> sigma;
  matrix[2, J] z;
}
transformed parameters {
  vector[J] r_Intercept;
  vector[J] r_x;
  // Omega = L_Omega * L_Omega', so Omega[2, 1] = L_Omega[2, 1] * L_Omega[1, 1] = L_Omega[2, 1]
  real cor_Intercept_x = L_Omega[2, 1];
  {
    matrix[2, J] r = diag_pre_multiply([sd_Intercept, sd_x]', L_Omega) * z;
    r_Intercept = r[1]';
    r_x = r[2]';
  }
}
model {
  b_Intercept ~ normal(b_Intercept_loc, b_Intercept_scale);
  b_x ~ normal(b_x_loc, b_x_scale);
  sd_Intercept ~ normal(0, sd_Intercept_scale);  // half-normal through the lower bound
  sd_x ~ normal(0, sd_x_scale);
  sigma ~ normal(0, sigma_scale);
  L_Omega ~ lkj_corr_cholesky(lkj_eta);
  to_vector(z) ~ std_normal();
  for (j in 1:J) {
    y[j, 1:N[j]] ~ normal(b_Intercept + r_Intercept[j]
                          + (b_x + r_x[j]) * to_vector(x[j, 1:N[j]]), sigma);
  }
}
generated quantities {
  // log p(y_j | global parameters, r_Intercept[j], r_x[j]), summed over group j
  vector[J] log_lik_group;
  for (j in 1:J) {
    log_lik_group[j] = normal_lpdf(y[j, 1:N[j]] | b_Intercept + r_Intercept[j]
                                   + (b_x + r_x[j]) * to_vector(x[j, 1:N[j]]), sigma);
  }
}
