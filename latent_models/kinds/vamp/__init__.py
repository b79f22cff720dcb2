"""The VampPrior VAE: a VAE whose prior is learned (a mixture of its own posteriors at learned
pseudo-inputs), with residual convolutional networks; reconstructs, samples from its prior,
decodes and scores (see `kind.py` for the folder)."""

from latent_models.kinds.kind import Kind
from latent_models.kinds.vamp.config import VampConfig, VampEvaluation, VampModelConfig

KIND = Kind(
    name="vamp",
    title="the VampPrior VAE",
    model_config=VampModelConfig,
    entry_point="vamp",
    config=VampConfig,
    validation_metrics={"val_neg_elbo": False, "val_recon": False, "val_neg_elbo_bits_per_dim": False},
    evaluate_options=VampEvaluation,
    test_metric="test_neg_elbo",
)
