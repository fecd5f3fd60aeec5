"""The VAE loss per image: reconstruction (SSE or BCE, summed over pixels) + KL to N(0, I)."""

from __future__ import annotations

import torch
from torch.nn import functional

from training.config import Parameterization, ReconstructionKind

# Keeps log(sigma^2) finite if a linear sigma head ever outputs exactly 0.
_MIN_SIGMA = 1e-12


def kl_divergence(
    mu: torch.Tensor, scale: torch.Tensor, parameterization: Parameterization
) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per element: (mu^2 + sigma^2 - 1 - log sigma^2) / 2."""
    if parameterization == "logvar":
        log_var, var = scale, torch.exp(scale)
    else:
        var = scale.pow(2)
        log_var = 2.0 * torch.log(scale.abs().clamp_min(_MIN_SIGMA))
    return 0.5 * (mu.pow(2) + var - 1.0 - log_var)


def reconstruction_error(
    reconstruction: torch.Tensor, images: torch.Tensor, kind: ReconstructionKind
) -> torch.Tensor:
    """Per-image reconstruction error, summed over pixels."""
    if kind == "bce":
        return functional.binary_cross_entropy(reconstruction, images, reduction="none").sum(dim=1)
    return (reconstruction - images).pow(2).sum(dim=1)


def vae_loss(
    reconstruction: torch.Tensor,
    images: torch.Tensor,
    mu: torch.Tensor,
    scale: torch.Tensor,
    *,
    parameterization: Parameterization,
    kind: ReconstructionKind = "sse",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean over the batch of (loss, reconstruction, KL), each per image."""
    rec = reconstruction_error(reconstruction, images, kind)
    kl = kl_divergence(mu, scale, parameterization).sum(dim=1)
    return (rec + kl).mean(), rec.mean(), kl.mean()
