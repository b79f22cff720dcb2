"""The served denoiser: noisy images in, denoised images out (see `serving.pyfunc` for what every
served model shares, `serving.inputs` for the forms a request takes)."""

from __future__ import annotations

import torch
from mlflow.types.schema import ColSpec, Schema

from latent_models.device import module_device
from latent_models.serving.inputs import MAX_BATCH, from_model_output, input_forms
from latent_models.serving.png import IMAGE_COLUMN
from latent_models.serving.pyfunc import ImageModelPyfunc, in_chunks


class DenoiserPyfunc(ImageModelPyfunc):
    """Noisy images in, denoised images out, in the caller's form and layout."""

    kind = "denoiser"
    DEFAULT_PARAMS = {"clip": False}

    @classmethod
    def output_schema(cls, config):
        # spark_udf's default result type: a string column of PNGs (see serving.logged_model)
        return Schema([ColSpec("string", IMAGE_COLUMN)])

    @classmethod
    def metadata(cls, config, extras):
        return {"inputs": {"images": input_forms(config.image_shape), "max_batch": MAX_BATCH}}

    def load_context(self, context):
        super().load_context(context)
        # Channels-last convolutions run about 1.5x faster on CPU, with the same results.
        self.model = self.model.to(memory_format=torch.channels_last)

    def predict(self, context, model_input, params=None):
        params = self.params(params)
        x, layout = self.images(model_input, clip=bool(params["clip"]))
        with torch.inference_mode():
            return from_model_output(in_chunks(self._denoise, x, module_device(self.model)), layout)

    def _denoise(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


PYFUNC = DenoiserPyfunc
