import torch

from training.config import TrainConfig
from training.model import VAE, ExportEncoder
from training.train import build_model


def test_default_architecture_is_the_tutorials():
    model = build_model(TrainConfig())
    assert model.encoder.hidden.weight.shape == (250, 784)
    assert model.encoder.mu.weight.shape == (30, 250)
    assert model.encoder.scale.weight.shape == (30, 250)
    assert model.decoder.hidden.weight.shape == (320, 30)
    assert model.decoder.out.weight.shape == (784, 320)


def test_forward_shapes_and_ranges():
    torch.manual_seed(0)
    model = VAE(latent_dim=8, encoder_hidden=16, decoder_hidden=12)
    x = torch.rand(5, 784)
    rec, mu, scale, z = model(x)
    assert rec.shape == (5, 784)
    assert mu.shape == scale.shape == z.shape == (5, 8)
    assert rec.min() >= 0
    assert rec.max() <= 1


def test_export_encoder_sigma_is_never_negative():
    torch.manual_seed(0)
    model = VAE(parameterization="sigma").eval()
    x = torch.rand(64, 784)
    _, scale = model.encoder(x)
    assert (scale < 0).any(), "an untrained linear sigma head has negative outputs"
    mu, sigma = ExportEncoder(model)(x)
    torch.testing.assert_close(sigma, scale.abs())
    assert mu.shape == sigma.shape == (64, 30)


def test_export_encoder_computes_sigma_from_logvar():
    torch.manual_seed(0)
    model = VAE(parameterization="logvar").eval()
    x = torch.rand(4, 784)
    _, log_var = model.encoder(x)
    _, sigma = ExportEncoder(model)(x)
    torch.testing.assert_close(sigma, torch.exp(0.5 * log_var))
