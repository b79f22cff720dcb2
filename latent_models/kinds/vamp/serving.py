"""The served VampPrior VAE: the VAE's modes (reconstruct, sample, decode, score; see
`kinds.vae.serving`), with `sample` drawing from the model's own learned prior."""

from __future__ import annotations

import torch

from latent_models.kinds.vae.serving import VAEPyfunc
from latent_models.serving.inputs import MAX_BATCH

SAMPLERS = ("prior",)  # z from the learned VampPrior: a pseudo-input at random, then its posterior


class VampPyfunc(VAEPyfunc):
    """The VAE's modes; mode=sample draws z from the learned prior (temperature scales the
    standard deviation of the pseudo-input's posterior); mode=score uses that prior's log p(z)."""

    kind = "vamp"
    SAMPLERS = SAMPLERS
    DEFAULT_PARAMS = {**VAEPyfunc.DEFAULT_PARAMS, "sampler": "prior"}

    @classmethod
    def metadata(cls, config, extras, settings):
        """The VAE's, but for what sample draws from."""
        meta = super().metadata(config, extras, settings)
        meta["inputs"]["sample"] = (
            f"rows with n (1..{MAX_BATCH}), optional seed (>= 0) and temperature (> 0, default 1: the prior "
            "itself; it scales the standard deviation of each pseudo-input's posterior); n images per row, in row order"
        )
        meta["inputs"]["samplers"] = (
            f"prior: the learned VampPrior, a mixture of the posteriors at {config.pseudo_inputs} learned pseudo-inputs"
        )
        return meta

    def latents(self, sampler: str, n: int, temperature: float, generator, device) -> torch.Tensor:
        return self.model.sample_latents(n, temperature, generator)


PYFUNC = VampPyfunc
