// Hierarchical Wiener diffusion decision model with one bias per group
// (Habermann et al. 2024, eq. 23 variant of eq. 22). Group j has drift nu[j],
// boundary separation alpha[j] = exp(log_alpha[j]), non-decision time
// tau[j] = exp(log_tau[j]) and a-priori bias (relative start point) beta[j],
//   beta[j] ~ beta_proportion(mu_beta, kappa_beta)   (mean mu_beta, precision kappa_beta).
//
// Trials are passed padded to N_max with their counts N[j]: response time rt
// in seconds and choice (1 = upper boundary, 0 = lower boundary). Stan's
// wiener_lpdf is the density of hitting the *upper* boundary at time rt; a
// lower-boundary response is an upper-boundary response of the mirrored
// process, bias 1 - beta and drift -nu[j].
//
// Non-decision time bound. The likelihood is zero whenever tau[j] >= rt for
// any trial of group j, so the posterior of the untruncated model
//     log_tau[j] ~ normal(mu_tau, sigma_tau)
// puts no mass above log(min_rt[j]). Declaring log_tau with the upper bound
// log(min_rt[j]) only keeps the sampler inside that support; it does not make
// the group distribution a truncated normal. We deliberately add NO truncation
// normaliser (-log Phi((log(min_rt[j]) - mu_tau) / sigma_tau)): with it the
// model would be a different one (a truncated population distribution whose
// normaliser depends on mu_tau and sigma_tau). Without it the joint density on
// the support, and hence the posterior, equals the untruncated model's.
functions {
  // log density of one group's trials; rt holds the n_up upper-boundary
  // response times first, then the lower-boundary ones
  real ddm_group_lpdf(array[] real rt, int n_up, real alpha, real tau, real beta, real nu) {
    int n = size(rt);
    real lp = 0;
    if (n_up > 0) {
      lp += wiener_lpdf(rt[1:n_up] | alpha, tau, beta, nu);
    }
    if (n_up < n) {
      lp += wiener_lpdf(rt[(n_up + 1):n] | alpha, tau, 1 - beta, -nu);
    }
    return lp;
  }
}
data {
  int<lower=1> J;
  int<lower=1> N_max;
  array[J] int<lower=1, upper=N_max> N;
  array[J, N_max] real rt;
  array[J, N_max] int<lower=0, upper=1> choice;
}
transformed data {
  vector[J] log_min_rt;
  array[J] int n_up;
  // per group: upper-boundary response times first, then lower-boundary ones
  array[J, N_max] real rt_sorted = rep_array(0.0, J, N_max);
  for (j in 1:J) {
    int k_up = 0;
    int k_lo = 0;
    n_up[j] = sum(choice[j, 1:N[j]]);
    for (i in 1:N[j]) {
      if (rt[j, i] <= 0) {
        reject("rt must be positive; found rt[", j, ", ", i, "] = ", rt[j, i]);
      }
      if (choice[j, i] == 1) {
        k_up += 1;
        rt_sorted[j, k_up] = rt[j, i];
      } else {
        k_lo += 1;
        rt_sorted[j, n_up[j] + k_lo] = rt[j, i];
      }
    }
    log_min_rt[j] = log(min(rt[j, 1:N[j]]));
  }
}
parameters {
  real mu_nu;
  real mu_alpha;
  real mu_tau;
  real log_sigma_nu;
  real log_sigma_alpha;
  real log_sigma_tau;
  real<lower=0, upper=1> mu_beta;
  real<lower=0> kappa_beta;
  vector<offset=mu_nu, multiplier=exp(log_sigma_nu)>[J] nu;
  vector<offset=mu_alpha, multiplier=exp(log_sigma_alpha)>[J] log_alpha;
  vector<upper=log_min_rt>[J] log_tau;  // centred; see the comment at the top
  vector<lower=0, upper=1>[J] beta;
}
model {
  mu_nu ~ normal(0.5, 0.3);
  mu_alpha ~ normal(0, 0.05);
  mu_tau ~ normal(-1, 0.3);
  log_sigma_nu ~ normal(-1, 1);
  log_sigma_alpha ~ normal(-3, 1);
  log_sigma_tau ~ normal(-1, 0.3);
  mu_beta ~ beta(50, 50);
  kappa_beta ~ gamma(5, 1.0 / 3);  // shape 5, scale 3 (mean 15): see python/amortbayes/models/ddm.py

  nu ~ normal(mu_nu, exp(log_sigma_nu));
  log_alpha ~ normal(mu_alpha, exp(log_sigma_alpha));
  log_tau ~ normal(mu_tau, exp(log_sigma_tau));  // no truncation normaliser, on purpose
  beta ~ beta_proportion(mu_beta, kappa_beta);

  for (j in 1:J) {
    rt_sorted[j, 1:N[j]] ~ ddm_group(n_up[j], exp(log_alpha[j]), exp(log_tau[j]), beta[j], nu[j]);
  }
}
generated quantities {
  // log p(trials of group j | nu[j], alpha[j], tau[j], beta[j])
  vector[J] log_lik_group;
  for (j in 1:J) {
    log_lik_group[j] = ddm_group_lpdf(rt_sorted[j, 1:N[j]] | n_up[j], exp(log_alpha[j]),
                                      exp(log_tau[j]), beta[j], nu[j]);
  }
}
