"""`vae_manifest.scoring`: the formulas, checked against direct computations."""

from __future__ import annotations

import numpy as np
import pytest

from vae_manifest import scoring

RNG = np.random.default_rng(0)
N, D, K, LATENT = 3, 6, 5, 2
X = RNG.random((N, D))
MU = RNG.standard_normal((N, LATENT))
SIGMA = RNG.random((N, LATENT)) + 0.1
EPS = RNG.standard_normal((K, N, LATENT))
RECON = RNG.random((K, N, D))


def test_neg_elbo_is_the_mean_reconstruction_plus_the_exact_kl():
    neg_elbo, _ = scoring.scores(X, MU, SIGMA, EPS, RECON, "sse")
    rec = ((RECON - X) ** 2).sum(axis=-1).mean(axis=0)
    kl = 0.5 * (MU**2 + SIGMA**2 - 1 - np.log(SIGMA**2)).sum(axis=-1)
    np.testing.assert_allclose(neg_elbo, rec + kl)


def test_iwae_is_minus_the_log_mean_importance_weight():
    _, iwae = scoring.scores(X, MU, SIGMA, EPS, RECON, "sse")
    z = MU + SIGMA * EPS
    log_p = -0.5 * (z**2).sum(-1)  # N(0, I) without its normaliser
    log_q = -0.5 * (EPS**2).sum(-1) - np.log(SIGMA).sum(-1)  # the same normaliser cancels
    rec = ((RECON - X) ** 2).sum(axis=-1)
    weights = np.exp(-rec + log_p - log_q)
    np.testing.assert_allclose(iwae, -np.log(weights.mean(axis=0)))


def test_bce_is_the_binary_cross_entropy():
    neg_elbo, _ = scoring.scores(X, MU, SIGMA, EPS[:1], RECON[:1], "bce")
    r = RECON[0]
    bce = -(X * np.log(r) + (1 - X) * np.log(1 - r)).sum(-1)
    kl = 0.5 * (MU**2 + SIGMA**2 - 1 - np.log(SIGMA**2)).sum(axis=-1)
    np.testing.assert_allclose(neg_elbo, bce + kl)


def test_percentiles_and_threshold_follow_the_calibration():
    quantiles = np.linspace(10.0, 110.0, 101)  # the p-th percentile is 10 + p
    np.testing.assert_allclose(
        scoring.percentile_of(np.array([5.0, 60.0, 200.0]), quantiles), [0.0, 50.0, 100.0]
    )
    assert scoring.threshold_at(quantiles, 0.99) == pytest.approx(109.0)
