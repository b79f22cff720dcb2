"""Model definitions. Pure PyTorch: nothing here knows about MLflow or training."""

from latent_models.models.denoiser import ConvAutoencoder, UNetDenoiser, build_denoiser
from latent_models.models.vae import ConvVAE

__all__ = ["ConvAutoencoder", "UNetDenoiser", "ConvVAE", "build_denoiser"]
