"""The variational autoencoder: reconstructs, samples and decodes (see `kind.py` for the folder)."""

from latent_models.kinds.kind import Kind
from latent_models.kinds.vae.config import VAEConfig, VAEEvaluation, VAEModelConfig

KIND = Kind(
    name="vae",
    title="the VAE",
    model_config=VAEModelConfig,
    entry_point="vae",
    config=VAEConfig,
    validation_metrics={"val_neg_elbo": False, "val_recon": False, "val_neg_elbo_bits_per_dim": False},
    evaluate_options=VAEEvaluation,
    test_metric="test_neg_elbo",
)
