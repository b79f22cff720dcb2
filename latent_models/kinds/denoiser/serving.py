"""The served denoiser: noisy images in, denoised images out (see `serving.pyfunc` for what every
served model shares, `serving.inputs` for the forms a request takes).

A U-Net (arch=unet) takes images of any size from MIN_SIDE on each side up to its pixel budget,
`max_pixels`, a setting of the logged model (see `whole_image` for how); the conv arch's dense
bottleneck fixes its image size to its training shape. `ensemble=8` answers the mean over the
8 flips and quarter turns (8 forward passes).
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from mlflow.types.schema import ColSpec, Schema

from latent_models.device import module_device
from latent_models.kinds.denoiser.model import UNetDenoiser
from latent_models.kinds.denoiser.whole_image import ENSEMBLES, MIN_SIDE, denoise, self_ensemble, tiling
from latent_models.serving.inputs import MAX_BATCH, InvalidInput, from_model_output, input_forms
from latent_models.serving.png import IMAGE_COLUMN, AnySize
from latent_models.serving.pyfunc import ImageModelPyfunc, in_chunks

# The default pixel budget per image: a 16-megapixel photo (4899x3266, or 4000x4000).
MAX_PIXELS = 16_000_000
FIXED_SIZE = "arch=conv: its dense bottleneck fixes the image size; arch=unet takes any size"


class DenoiserPyfunc(ImageModelPyfunc):
    """Noisy images in, denoised images out, in the caller's form, layout and sizes."""

    kind = "denoiser"
    DEFAULT_PARAMS = {"clip": False, "ensemble": 1}
    SETTINGS = {"max_pixels": MAX_PIXELS}

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        budget = settings["max_pixels"]
        if isinstance(budget, bool) or not isinstance(budget, Integral) or budget < MIN_SIDE * MIN_SIDE:
            raise ValueError(
                f"max_pixels must be a whole number of pixels, at least {MIN_SIDE * MIN_SIDE}; got {budget!r}"
            )

    @classmethod
    def output_schema(cls, config):
        # spark_udf's default result type: a string column of PNGs (see serving.logged_model)
        return Schema([ColSpec("string", IMAGE_COLUMN)])

    @classmethod
    def metadata(cls, config, extras, settings):
        if config.arch != "unet":
            return {"inputs": {"images": input_forms(config.image_shape), "max_batch": MAX_BATCH}}
        sizes = AnySize(MIN_SIDE, int(settings["max_pixels"]))
        return {
            "inputs": {
                "images": input_forms(config.image_shape, sizes),
                "max_batch": MAX_BATCH,
                "min_side": sizes.min_side,
                "max_pixels": sizes.max_pixels,
                "ensemble": "1 (default) or 8: the mean over the 8 flips and quarter turns, 8 forward passes",
            }
        }

    def load_context(self, context):
        super().load_context(context)
        # Channels-last convolutions run about 1.5x faster on CPU, with the same results.
        self.model = self.model.to(memory_format=torch.channels_last)
        settings = self.loaded_settings(context)
        if isinstance(self.model, UNetDenoiser):
            self.sizes = AnySize(MIN_SIDE, int(settings["max_pixels"]))
            self.tiling = tiling(self.model)

    def images(self, model_input, clip: bool = False):
        try:
            return super().images(model_input, clip)
        except InvalidInput as exc:
            if self.sizes is None and "this model takes" in exc.message:
                raise InvalidInput(f"{exc.message} ({FIXED_SIZE})") from None
            raise

    def predict(self, context, model_input, params=None):
        params = self.params(params)
        ensemble = _ensemble(params["ensemble"])
        x, layout = self.images(model_input, clip=bool(params["clip"]))
        if ensemble > 1 and self.sizes is None and self.image_shape[1] != self.image_shape[2]:
            raise InvalidInput(f"ensemble=8 turns images a quarter: it needs square images ({FIXED_SIZE})")
        with torch.inference_mode():
            if isinstance(x, list):  # PNGs each of its own size
                return from_model_output([self._answer(image, ensemble)[0] for image in x], layout)
            return from_model_output(self._answer(x, ensemble), layout)

    def _answer(self, x: torch.Tensor, ensemble: int) -> np.ndarray | torch.Tensor:
        device = module_device(self.model)
        if ensemble == 1 and tuple(x.shape[1:]) == tuple(self.image_shape):
            return in_chunks(self._denoise, x, device)  # the training size: as many per pass as ever
        if self.sizes is None:
            run = lambda images: torch.from_numpy(in_chunks(self._denoise, images, device))  # noqa: E731
        else:
            run = lambda images: denoise(self._denoise, images, self.tiling, device)  # noqa: E731
        return self_ensemble(run, x) if ensemble > 1 else run(x)

    def _denoise(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


def _ensemble(value) -> int:
    """The `ensemble` param: 1 or 8."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (Integral, float)) or value not in ENSEMBLES:
        raise InvalidInput(
            f"ensemble must be 1 (one pass) or 8 (the mean over 8 flips and quarter turns); got {value!r}"
        )
    return int(value)


PYFUNC = DenoiserPyfunc
