"""The pyfunc models: what runs inside `mlflow models serve` and `mlflow.pyfunc.load_model`.

Each wrapper loads its model through the one path every model takes (`config.json` beside
`weights.pt`, see `latent_models.models`), checks the request with `serving.inputs`, and
answers in the caller's form. The code that logs these models is `serving.logged_model`.
"""

from __future__ import annotations

import mlflow
import torch

from latent_models.device import module_device, serving_device
from latent_models.models import load_model_files
from latent_models.models.prior import GaussianMixturePrior
from latent_models.serving.inputs import (
    InvalidInput,
    from_model_output,
    generated_layout,
    sample_requests,
    to_latents,
    to_model_input,
)

VAE_MODES = ("reconstruct", "sample", "decode")
SAMPLERS = ("normal", "fitted")  # z ~ N(0, I), or the mixture fitted to the training latents
# Each kind's request params and their defaults: the logged params schema is built from these.
DEFAULT_PARAMS = {
    "denoiser": {"clip": False},
    "vae": {"mode": "reconstruct", "clip": False, "n": 16, "seed": -1, "temperature": 1.0, "sampler": "normal"},
    "classifier": {},
}


class ImageModelPyfunc(mlflow.pyfunc.PythonModel):
    """The model behind `context.artifacts` (config + weights), on $LATENT_MODELS_DEVICE
    (default auto), wherever it was logged."""

    kind = ""

    def load_context(self, context):
        self.model = load_model_files(context.artifacts["config"], context.artifacts["weights"], serving_device())
        self.image_shape = self.model.config.image_shape

    def params(self, params: dict | None) -> dict:
        return {**DEFAULT_PARAMS[self.kind], **(params or {})}

    def images(self, model_input, clip: bool = False):
        return to_model_input(model_input, clip, self.image_shape)


class DenoiserPyfunc(ImageModelPyfunc):
    """Noisy images in, denoised images out, in the caller's form and layout."""

    kind = "denoiser"

    def load_context(self, context):
        super().load_context(context)
        # Channels-last convolutions run about 1.5x faster on CPU, with the same results.
        self.model = self.model.to(memory_format=torch.channels_last)

    def predict(self, context, model_input, params=None):
        params = self.params(params)
        x, layout = self.images(model_input, clip=bool(params["clip"]))
        with torch.inference_mode():
            x = x.to(module_device(self.model))
            return from_model_output(self.model(x.contiguous(memory_format=torch.channels_last)), layout)


class VAEPyfunc(ImageModelPyfunc):
    """mode=reconstruct: images -> reconstructions; mode=sample: rows (n, seed, temperature)
    -> n new images per row; mode=decode: latent vectors (N, latent_dim) -> images."""

    kind = "vae"

    def load_context(self, context):
        super().load_context(context)
        prior = context.artifacts.get("prior")
        self.prior = (GaussianMixturePrior.from_state_dict(torch.load(prior, map_location="cpu", weights_only=True))
                      if prior else None)

    def predict(self, context, model_input, params=None):
        params = self.params(params)
        mode = params["mode"]
        if mode not in VAE_MODES:
            raise InvalidInput(f"mode must be one of {', '.join(VAE_MODES)}; got {mode!r}")
        device = module_device(self.model)
        with torch.inference_mode():
            if mode == "reconstruct":
                x, layout = self.images(model_input, clip=bool(params["clip"]))
                mu, _ = self.model.encode(x.to(device))
                return from_model_output(self.model.decode(mu), layout)
            if mode == "decode":
                z = to_latents(model_input, self.model.latent_dim)
                return from_model_output(self.model.decode(z.to(device)), generated_layout(self.image_shape))
            sampler = params["sampler"]
            if sampler not in SAMPLERS:
                raise InvalidInput(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
            if sampler == "fitted" and self.prior is None:
                raise InvalidInput("this model was logged without a fitted prior (prior_components=0); "
                                   "use sampler \"normal\"")
            images = []
            for n, seed, temperature in sample_requests(model_input, params):
                generator = None if seed is None else torch.Generator().manual_seed(seed)
                if sampler == "fitted":
                    images.append(self.model.decode(self.prior.sample(n, temperature, generator).to(device)))
                else:
                    images.append(self.model.sample(n, temperature, generator))
            return from_model_output(torch.cat(images), generated_layout(self.image_shape))


class ClassifierPyfunc(ImageModelPyfunc):
    """Images in, class probabilities (N, classes) out: the feature extractor behind the
    sample-quality metrics, served too so its predictions can be checked."""

    kind = "classifier"

    def predict(self, context, model_input, params=None):
        x, _ = self.images(model_input)
        with torch.inference_mode():
            return self.model(x.to(module_device(self.model))).softmax(dim=1).cpu().numpy()


def load_torch_model(model_uri: str, device: torch.device | None = None):
    """(the torch module, its pyfunc wrapper) behind a logged model: for evaluation, on
    `device` (default: the serving device)."""
    wrapper = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    if device is not None:
        wrapper.model.to(device)
    return wrapper.model, wrapper
