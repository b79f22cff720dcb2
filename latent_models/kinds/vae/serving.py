"""The served VAE: reconstructs, samples, decodes and scores (see `serving.pyfunc` for what every served
model shares, `serving.inputs` for the forms a request takes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from mlflow.types.schema import ColSpec, Schema

from latent_models.device import module_device
from latent_models.evaluation.metrics import bits_per_dim
from latent_models.kinds.vae.prior import GaussianMixturePrior
from latent_models.kinds.vae.requests import MAX_K, importance_samples, sample_requests, to_latents
from latent_models.kinds.vae.scores import iw_nll_per_image
from latent_models.serving.inputs import (
    MAX_BATCH,
    InvalidInput,
    check_finite,
    from_model_output,
    generated_layout,
    input_forms,
)
from latent_models.serving.png import IMAGE_COLUMN
from latent_models.serving.pyfunc import ImageModelPyfunc, in_chunks

MODES = ("reconstruct", "sample", "decode", "score")
SCORE_COLUMNS = ("nll_nats", "bits_per_dim")
SAMPLERS = ("normal", "fitted")  # z ~ N(0, I), or the mixture fitted to the training latents


class VAEPyfunc(ImageModelPyfunc):
    """mode=reconstruct: images -> reconstructions; mode=sample: rows (n, seed, temperature)
    -> n new images per row; mode=decode: latent vectors (N, latent_dim) -> images;
    mode=score: images -> a table of -log p(x) per image (importance-weighted, k samples)."""

    kind = "vae"
    SAMPLERS = SAMPLERS
    DEFAULT_PARAMS = {
        "mode": "reconstruct",
        "clip": False,
        "n": 16,
        "seed": -1,
        "temperature": 1.0,
        "sampler": "normal",
        "k": 100,
    }

    @classmethod
    def output_schema(cls, config):
        # spark_udf's default result type: a string column of PNGs (see serving.logged_model)
        return Schema([ColSpec("string", IMAGE_COLUMN)])

    @classmethod
    def metadata(cls, config, extras, settings):
        return {
            "inputs": {
                "reconstruct": input_forms(config.image_shape),
                "sample": f"rows with n (1..{MAX_BATCH}), optional seed (>= 0) and temperature (> 0, default 1); "
                "n images per row, in row order",
                "decode": f"float32 (N, {config.latent_dim}) latent vectors",
                "score": f"the images of reconstruct; params k (importance samples, 1..{MAX_K}, default 100) and "
                "seed (>= 0: reproducible); answers a table with columns "
                f"{', '.join(SCORE_COLUMNS)}: -log p(x) per image in nats and in bits per dimension, "
                "one row per image in input order (higher: less likely under the model)",
                "samplers": "normal: z ~ N(0, I); fitted: the Gaussian mixture fitted to the training latent means"
                + ("" if "prior" in extras else " (not in this model)"),
                "max_batch": MAX_BATCH,
            }
        }

    def load_context(self, context):
        super().load_context(context)
        prior = context.artifacts.get("prior")
        self.prior = (
            GaussianMixturePrior.from_state_dict(torch.load(prior, map_location="cpu", weights_only=True))
            if prior
            else None
        )

    def predict(self, context, model_input, params=None):
        params = self.params(params)
        mode = params["mode"]
        if mode not in MODES:
            raise InvalidInput(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        device = module_device(self.model)
        with torch.inference_mode():
            if mode == "reconstruct":
                x, layout = self.images(model_input, clip=bool(params["clip"]))
                return from_model_output(in_chunks(self._reconstruct, x, device), layout)
            if mode == "score":
                return self._score(model_input, params)
            if mode == "decode":
                z = to_latents(model_input, self.model.latent_dim)
                return from_model_output(in_chunks(self.model.decode, z, device), generated_layout(self.image_shape))
            sampler = params["sampler"]
            if sampler not in self.SAMPLERS:
                raise InvalidInput(f"sampler must be one of {', '.join(self.SAMPLERS)}; got {sampler!r}")
            if sampler == "fitted" and self.prior is None:
                raise InvalidInput(
                    'this model was logged without a fitted prior (prior_components=0); use sampler "normal"'
                )
            images = []
            for n, seed, temperature in sample_requests(model_input, params):
                generator = None if seed is None else torch.Generator().manual_seed(seed)
                z = self.latents(sampler, n, temperature, generator, device)
                # Each row decoded on its own: a row's images do not depend on the other rows.
                images.append(in_chunks(self.model.decode, z, device))
            return from_model_output(np.concatenate(images), generated_layout(self.image_shape))

    def latents(self, sampler: str, n: int, temperature: float, generator, device) -> torch.Tensor:
        """n latent vectors from `sampler` (one of SAMPLERS), drawn from `generator` (None: random)."""
        if sampler == "fitted":
            return self.prior.sample(n, temperature, generator)
        # as ConvVAE.sample draws them, decoded CHUNK at a time
        return (
            torch.randn(
                n,
                self.model.latent_dim,
                generator=generator,
                device=generator.device if generator is not None else device,
            )
            * temperature
        )

    def _score(self, model_input, params: dict) -> pd.DataFrame:
        """-log p(x) per image: the importance-weighted estimate that `test_iw_nll` averages
        (`scores.iw_nll_per_image`, so a seed gives the training metric's numbers), in nats
        and in the bits per dimension of the training metrics. A Bernoulli model scores the
        intensities as given (their cross-entropy with the decoder's pixel probabilities): a
        model trained with binarize=true is not binarized here, which would make the score
        random; send 0/1 images to get the probability of a binary image."""
        k = importance_samples(params["k"])
        x, _ = self.images(model_input, clip=bool(params["clip"]))
        seed = int(params["seed"])
        generator = torch.Generator()
        if seed >= 0:
            generator.manual_seed(seed)
        else:
            generator.seed()  # -1: a fresh random seed, as sample draws
        nll = iw_nll_per_image(self.model, x, k, generator).double().numpy()
        check_finite(nll)
        bits = [bits_per_dim(v, self.image_shape, self.model.likelihood) for v in nll.tolist()]
        return pd.DataFrame({"nll_nats": nll, "bits_per_dim": np.asarray(bits, dtype=np.float64)})

    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self.model.encode(x)
        return self.model.decode(mu)


PYFUNC = VAEPyfunc
