"""The tutorial's VAE: a one-hidden-layer MLP encoder and decoder.

Encoder 784 -> 250 (ReLU) -> two linear heads of size d (mu, and sigma or log-variance).
Decoder d -> 320 (ReLU) -> 784 (sigmoid, so images lie in [0, 1]). 784 = 28x28 by default;
`image_size` sets another (e.g. 1024 for digits on a 32x32 canvas).
"""

from __future__ import annotations

import torch
from torch import nn

from training.config import Parameterization

IMAGE_SIZE = 784


class Encoder(nn.Module):
    def __init__(self, hidden: int, latent_dim: int, image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        self.hidden = nn.Linear(image_size, hidden)
        self.mu = nn.Linear(hidden, latent_dim)
        # The second head is sigma or log(sigma^2), depending on the parameterisation.
        self.scale = nn.Linear(hidden, latent_dim)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.hidden(images))
        return self.mu(h), self.scale(h)


class Decoder(nn.Module):
    def __init__(self, latent_dim: int, hidden: int, image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        self.hidden = nn.Linear(latent_dim, hidden)
        self.out = nn.Linear(hidden, image_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(torch.relu(self.hidden(z))))


def scale_to_sigma(scale: torch.Tensor, parameterization: Parameterization) -> torch.Tensor:
    """The standard deviation from the encoder's second head (never negative)."""
    if parameterization == "logvar":
        return torch.exp(0.5 * scale)
    # The tutorial's linear sigma head can go negative; only sigma^2 enters the loss.
    return torch.abs(scale)


class VAE(nn.Module):
    def __init__(
        self,
        *,
        encoder_hidden: int = 250,
        decoder_hidden: int = 320,
        latent_dim: int = 30,
        parameterization: Parameterization = "logvar",
        image_size: int = IMAGE_SIZE,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.image_size = image_size
        self.parameterization: Parameterization = parameterization
        self.encoder = Encoder(encoder_hidden, latent_dim, image_size)
        self.decoder = Decoder(latent_dim, decoder_hidden, image_size)

    def forward(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (reconstruction, mu, scale, z) with z = mu + sigma * eps, eps ~ N(0, I)."""
        mu, scale = self.encoder(images)
        sigma = scale_to_sigma(scale, self.parameterization)
        z = mu + sigma * torch.randn_like(mu)
        return self.decoder(z), mu, scale, z


class ExportEncoder(nn.Module):
    """What `encoder.onnx` computes: images -> (mu, sigma), sigma >= 0 in both parameterisations."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.encoder = vae.encoder
        self.parameterization: Parameterization = vae.parameterization

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, scale = self.encoder(images)
        return mu, scale_to_sigma(scale, self.parameterization)
