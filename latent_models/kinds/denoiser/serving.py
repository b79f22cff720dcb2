"""The served denoiser: noisy images in, denoised images out (see `serving.pyfunc` for what every
served model shares, `serving.inputs` for the forms a request takes).

A U-Net (arch=unet) takes images of any size from MIN_SIDE on each side up to its pixel budget,
`max_pixels`, a setting of the logged model (see `whole_image` for how); the conv arch's dense
bottleneck fixes its image size to its training shape. `ensemble=8` answers the mean over the
8 flips and quarter turns (8 forward passes).

A noise-map model (sigma_max > 0) is told each image's noise level: the request's `sigma`, or
with sigma=auto (the default) the level estimated from the image itself (`colour.py`). A grey
noise-map model also takes RGB images, through its luma and chroma (`colour.py`).
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from mlflow.types.schema import ColSpec, Schema

from latent_models.device import module_device
from latent_models.kinds.denoiser.colour import estimate_sigma, from_luma_chroma, to_luma_chroma
from latent_models.kinds.denoiser.model import UNetDenoiser
from latent_models.kinds.denoiser.whole_image import ENSEMBLES, MIN_SIDE, denoise, self_ensemble, tiling
from latent_models.serving.inputs import MAX_BATCH, InvalidInput, from_model_output, input_forms, to_model_input
from latent_models.serving.png import IMAGE_COLUMN, AnySize, png_channels
from latent_models.serving.pyfunc import ONE_THREAD_ROWS, ImageModelPyfunc, in_chunks, small_pass_graph

# The default pixel budget per image: a 16-megapixel photo (4899x3266, or 4000x4000).
MAX_PIXELS = 16_000_000
FIXED_SIZE = "arch=conv: its dense bottleneck fixes the image size; arch=unet takes any size"
AUTO = "auto"
ONE_LEVEL = (
    "this denoiser was trained at one noise level and takes no sigma (a model trained with sigma_max > 0 "
    "does); leave sigma out"
)


class DenoiserPyfunc(ImageModelPyfunc):
    """Noisy images in, denoised images out, in the caller's form, layout and sizes."""

    kind = "denoiser"
    DEFAULT_PARAMS = {"clip": False, "ensemble": 1, "sigma": AUTO}
    SETTINGS = {"max_pixels": MAX_PIXELS}

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        budget = settings["max_pixels"]
        if isinstance(budget, bool) or not isinstance(budget, Integral) or budget < MIN_SIDE * MIN_SIDE:
            raise ValueError(
                f"max_pixels must be a whole number of pixels, at least {MIN_SIDE * MIN_SIDE}; got {budget!r}"
            )

    @classmethod
    def schema_params(cls, params: dict) -> dict:
        # `sigma` is a string param ("auto" or a number): a number sent as a JSON number is
        # taken as its text, which MLflow's schema would otherwise refuse.
        sigma = params.get("sigma")
        if isinstance(sigma, (Integral, float)) and not isinstance(sigma, (bool, np.bool_)):
            return {**params, "sigma": repr(float(sigma))}
        return params

    @classmethod
    def requirements(cls, config) -> list[str]:
        if not getattr(config, "noise_map", False):
            return []
        from importlib.metadata import version  # PyWavelets' own __version__ can lag its package's

        return [f"{name}=={version(name)}" for name in ("scipy", "PyWavelets")]  # sigma=auto

    @classmethod
    def output_schema(cls, config):
        # spark_udf's default result type: a string column of PNGs (see serving.logged_model)
        return Schema([ColSpec("string", IMAGE_COLUMN)])

    @classmethod
    def metadata(cls, config, extras, settings):
        if config.arch != "unet":
            return {"inputs": {"images": input_forms(config.image_shape), "max_batch": MAX_BATCH}}
        sizes = AnySize(MIN_SIDE, int(settings["max_pixels"]))
        inputs = {
            "images": input_forms(config.image_shape, sizes),
            "max_batch": MAX_BATCH,
            "min_side": sizes.min_side,
            "max_pixels": sizes.max_pixels,
            "ensemble": "1 (default) or 8: the mean over the 8 flips and quarter turns, 8 forward passes",
        }
        if config.noise_map:
            inputs["sigma"] = (
                f"the Gaussian noise level, a number from 0 to {config.sigma_max:g} in [0, 1] units (σ on the "
                "0-255 scale / 255), or auto (the default): estimated from each image"
            )
            if config.channels == 1:
                inputs["images"] += "; RGB images too, through their luma and chroma"
        return {"inputs": inputs}

    def load_context(self, context):
        super().load_context(context)
        # Channels-last convolutions run about 1.5x faster on CPU, with the same results.
        self.model = self.model.to(memory_format=torch.channels_last)
        settings = self.loaded_settings(context)
        config = self.model.config
        self.sigma_max = getattr(config, "sigma_max", 0.0)
        # A grey noise-map model denoises RGB through its luma and chroma.
        self.takes_rgb = self.sigma_max > 0 and config.channels == 1
        if isinstance(self.model, UNetDenoiser):
            self.sizes = AnySize(MIN_SIDE, int(settings["max_pixels"]))
            self.tiling = tiling(self.model)
        self.small_pass = None if self.sigma_max else small_pass_graph(self.model, self.image_shape)

    def images(self, model_input, clip: bool = False):
        if self.takes_rgb and _sends_rgb(model_input):
            return to_model_input(model_input, clip, (3, *self.image_shape[1:]), sizes=self.sizes)
        try:
            return super().images(model_input, clip)
        except InvalidInput as exc:
            if self.sizes is None and "this model takes" in exc.message:
                raise InvalidInput(f"{exc.message} ({FIXED_SIZE})") from None
            raise

    def predict(self, context, model_input, params=None):
        params = self.params(params)
        ensemble = _ensemble(params["ensemble"])
        sigma = _sigma(params["sigma"], self.sigma_max)
        x, layout = self.images(model_input, clip=bool(params["clip"]))
        if ensemble > 1 and self.sizes is None and self.image_shape[1] != self.image_shape[2]:
            raise InvalidInput(f"ensemble=8 turns images a quarter: it needs square images ({FIXED_SIZE})")
        with torch.inference_mode():
            if isinstance(x, list):  # PNGs each of its own size
                return from_model_output([self._answer(image, ensemble, sigma)[0] for image in x], layout)
            return from_model_output(self._answer(x, ensemble, sigma), layout)

    def _answer(self, x: torch.Tensor, ensemble: int, sigma: float | None) -> np.ndarray | torch.Tensor:
        device = module_device(self.model)
        levels = self._levels(x, sigma)
        if x.shape[1] != self.image_shape[0]:  # RGB through a grey noise-map model
            grey, levels = to_luma_chroma(x, levels)
            return from_luma_chroma(torch.as_tensor(self._answer_grey(grey, ensemble, levels, device)))
        return self._answer_grey(x, ensemble, levels, device)

    def _answer_grey(self, x, ensemble: int, levels, device) -> np.ndarray | torch.Tensor:
        if ensemble == 1 and levels is None and tuple(x.shape[1:]) == tuple(self.image_shape):
            return in_chunks(self._denoise, x, device)  # the training size: as many per pass as ever
        if self.sizes is None:
            run = lambda images: torch.from_numpy(in_chunks(self._denoise, images, device))  # noqa: E731
        else:
            run = lambda images: denoise(self._denoise, images, self.tiling, device, levels)  # noqa: E731
        return self_ensemble(run, x) if ensemble > 1 else run(x)

    def _levels(self, x: torch.Tensor, sigma: float | None) -> torch.Tensor | None:
        """Each image's noise level (None: a one-level model): as asked, or estimated."""
        if not self.sigma_max:
            return None
        if sigma is None:
            return torch.tensor([min(estimate_sigma(image), self.sigma_max) for image in x])
        return torch.full((len(x),), sigma)

    def _denoise(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        if sigma is not None:
            return self.model(x, sigma)
        if self.small_pass is not None and len(x) <= ONE_THREAD_ROWS and tuple(x.shape[1:]) == tuple(self.image_shape):
            try:
                return self.small_pass(x)
            except Exception:  # noqa: BLE001 - a batch size the fuser could not compile: eager from now on
                self.small_pass = None
        return self.model(x)


def _sends_rgb(model_input) -> bool:
    """Whether a request holds RGB images (a float tensor of 3 channels, or RGB PNGs), read
    from its shape or its first PNG's header, before anything is converted."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame) and IMAGE_COLUMN in model_input.columns and len(model_input):
        return png_channels(model_input[IMAGE_COLUMN].iloc[0]) == 3
    if isinstance(model_input, dict) and IMAGE_COLUMN in model_input:
        first = np.atleast_1d(np.asarray(model_input[IMAGE_COLUMN], dtype=object)).ravel()
        return len(first) > 0 and png_channels(first[0]) == 3
    shape = getattr(model_input, "shape", None)
    return shape is not None and len(shape) == 4 and shape[1] == 3


def _sigma(value, sigma_max: float) -> float | None:
    """The `sigma` param: a level within what the model was trained on, or None for auto."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return None
    if not sigma_max:
        raise InvalidInput(f"sigma: {ONE_LEVEL}")
    try:
        if isinstance(value, (bool, np.bool_)):
            raise ValueError
        level = float(value)
    except (TypeError, ValueError):
        level = None
    if level is None or not 0 <= level <= sigma_max:
        raise InvalidInput(
            f"sigma must be auto or a noise level from 0 to {sigma_max:g}, the range this model was trained on, "
            f"in [0, 1] units (σ on the 0-255 scale / 255: 25 -> 0.098); got {str(value)[:40]!r}"
        )
    return level


def _ensemble(value) -> int:
    """The `ensemble` param: 1 or 8."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (Integral, float)) or value not in ENSEMBLES:
        raise InvalidInput(
            f"ensemble must be 1 (one pass) or 8 (the mean over 8 flips and quarter turns); got {value!r}"
        )
    return int(value)


PYFUNC = DenoiserPyfunc
