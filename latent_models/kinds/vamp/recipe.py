"""The VampPrior VAE's part of the pipeline (`training.pipeline`): the VAE's own (the ELBO with a
KL warm-up on dynamically binarized images, -ELBO and IW-NLL on held-out images, the figures,
the champion rule), with the model's learned prior in place of N(0, I) and no mixture fitted
afterwards: its samples come from the prior it was trained with."""

from __future__ import annotations

from latent_models.data import DataSplits, binarized
from latent_models.evaluation.scores import TEST_SEED, VAL_SEED
from latent_models.kinds.vae.recipe import VAERecipe
from latent_models.kinds.vamp import KIND
from latent_models.kinds.vamp.config import VampConfig
from latent_models.training.loop import EpochHook
from latent_models.training.pipeline import Recipe, run_pipeline


class VampRecipe(VAERecipe):
    kind = KIND
    short_name = "VampPrior VAE"
    samples_title = "100 samples, z ~ the learned VampPrior"

    def __init__(self, cfg: VampConfig, data: DataSplits):
        Recipe.__init__(self, cfg, data)
        self.val_x = binarized(data.val.images, VAL_SEED) if cfg.binarize else data.val.images
        self.test_x = binarized(data.test.images, TEST_SEED) if cfg.binarize else data.test.images
        self.prior = None

    def version_tags(self, measured):
        return {**super().version_tags(measured), "pseudo_inputs": self.cfg.pseudo_inputs}

    def fitted_prior(self, model):
        """None: the model samples from its own prior (the VAE fits a mixture here)."""
        return None


RECIPE = VampRecipe


def run_vamp(
    cfg: VampConfig,
    parent_run_id: str | None = None,
    data: DataSplits | None = None,
    epoch_hook: EpochHook | None = None,
) -> dict:
    """The `vamp` entry point (see `training.pipeline.run_pipeline`)."""
    return run_pipeline(VampRecipe, cfg, parent_run_id, data, epoch_hook)
