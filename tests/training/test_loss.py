import numpy as np
import pytest
import torch
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from training.loss import kl_divergence, reconstruction_error, vae_loss
from training.metrics import kl_per_element, reconstruction_per_image


def test_kl_is_zero_for_the_prior_in_both_parameterisations():
    mu = torch.zeros(4, 30)
    assert torch.equal(kl_divergence(mu, torch.ones(4, 30), "sigma"), torch.zeros(4, 30))
    assert torch.equal(kl_divergence(mu, torch.zeros(4, 30), "logvar"), torch.zeros(4, 30))


@pytest.mark.parametrize("parameterization", ["sigma", "logvar"])
def test_kl_matches_the_closed_form(parameterization):
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(64, 30, generator=gen, dtype=torch.float64)
    sigma = torch.rand(64, 30, generator=gen, dtype=torch.float64) * 3 + 0.05
    scale = sigma if parameterization == "sigma" else torch.log(sigma**2)
    expected = torch_kl(Normal(mu, sigma), Normal(0.0, 1.0))
    torch.testing.assert_close(kl_divergence(mu, scale, parameterization), expected)
    # By hand: KL = (mu^2 + sigma^2 - 1 - log sigma^2) / 2; e.g. mu = 1, sigma = e -> (e^2 - 2) / 2.
    one = torch.ones(1, dtype=torch.float64)
    e_scale = one * np.e if parameterization == "sigma" else one * 2.0
    torch.testing.assert_close(
        kl_divergence(one, e_scale, parameterization), (one * np.e**2 - 2) / 2
    )


def test_sigma_head_sign_does_not_matter():
    mu, sigma = torch.tensor([[0.3, -1.0]]), torch.tensor([[0.5, 2.0]])
    torch.testing.assert_close(
        kl_divergence(mu, -sigma, "sigma"), kl_divergence(mu, sigma, "sigma")
    )


def test_numpy_metrics_agree_with_the_training_loss():
    rng = np.random.default_rng(1)
    mu = rng.standard_normal((16, 30)).astype(np.float32)
    sigma = rng.uniform(0.1, 2, (16, 30)).astype(np.float32)
    np.testing.assert_allclose(
        kl_per_element(mu, sigma),
        kl_divergence(torch.from_numpy(mu), torch.from_numpy(sigma), "sigma").numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    x = rng.random((16, 784)).astype(np.float32)
    r = rng.uniform(0.01, 0.99, (16, 784)).astype(np.float32)
    for kind in ("sse", "bce"):
        np.testing.assert_allclose(
            reconstruction_per_image(r, x, kind),
            reconstruction_error(torch.from_numpy(r), torch.from_numpy(x), kind).numpy(),
            rtol=1e-5,
        )


def test_vae_loss_is_the_mean_per_image_sum():
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    r = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    mu, scale = torch.zeros(2, 3), torch.zeros(2, 3)
    loss, rec, kl = vae_loss(r, x, mu, scale, parameterization="logvar")
    assert rec.item() == pytest.approx((0.5 + 1.0) / 2)
    assert kl.item() == 0.0
    assert loss.item() == pytest.approx(0.75)
