"""The pyfunc models: what runs inside `mlflow models serve` and `mlflow.pyfunc.load_model`.

Each wrapper loads its model through the one path every model takes (`config.json` beside
`weights.pt`, see `latent_models.models`), checks the request with `serving.inputs`, and
answers in the caller's form. The code that logs these models is `serving.logged_model`.
"""

from __future__ import annotations

import mlflow
import numpy as np
import torch

from latent_models.device import module_device, serving_device
from latent_models.models import load_model_files
from latent_models.models.prior import GaussianMixturePrior
from latent_models.serving.inputs import (
    CHUNK,
    InvalidInput,
    check_json_tensor,
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


def check_params(kind: str, params: dict | None) -> dict:
    """The request's params over the defaults of `kind`; an unknown name is refused (a typo
    would otherwise be ignored silently), naming the ones this model takes."""
    allowed = DEFAULT_PARAMS[kind]
    unknown = sorted(str(k) for k in (params or {}) if k not in allowed)
    if unknown:
        takes = f"this model takes {', '.join(allowed)}" if allowed else "this model takes no params"
        raise InvalidInput(f"unknown params {unknown}; {takes}")
    return {**allowed, **(params or {})}


def _refuse_unknown_params() -> None:
    """Make MLflow refuse, not drop, unknown params for these models.

    MLflow's pyfunc enforces the logged params schema before `predict` runs and drops any
    name not in it with a log warning only (`mlflow.pyfunc._enforce_params_schema`), so
    `predict` never sees a typo such as {"temprature": 0.1}. This wraps that function so that,
    for a params schema that is exactly one of ours (same names as a kind's DEFAULT_PARAMS),
    an unknown name is a 400 naming the allowed ones; any other model's params go through
    unchanged. Installed once per process when this module is imported, i.e. when one of
    our models is loaded, before any request; tests/test_serving*.py cover it.
    """
    import mlflow.pyfunc as pyfunc_module

    enforce = getattr(pyfunc_module, "_enforce_params_schema", None)
    if enforce is None:
        return
    # name set -> check; shared by every copy of this package loaded in the process (see
    # serving.isolation), each adding its own kinds.
    checks = getattr(enforce, "_latent_models_checks", None)
    if checks is None:
        checks = {}

        def strict(params, schema):
            names = frozenset(p.name for p in getattr(schema, "params", None) or [])
            if isinstance(params, dict) and names in checks:
                checks[names]({str(k): v for k, v in params.items()})
            return enforce(params, schema)

        strict._latent_models_checks = checks
        strict.__wrapped__ = enforce
        pyfunc_module._enforce_params_schema = strict
    for kind, defaults in DEFAULT_PARAMS.items():
        if defaults:
            checks.setdefault(frozenset(defaults), lambda params, kind=kind: check_params(kind, params))


_refuse_unknown_params()


def _check_json_before_mlflow_parses_it() -> None:
    """Where MLflow's scoring code runs in this process (`mlflow models serve`, `mlflow models
    predict`), check a JSON tensor's leaves before MLflow converts them (see
    inputs.check_json_tensor): it is imported before the model loads, so this runs before any
    request. Wraps `scoring_server.infer_and_parse_data`, which its JSON path calls by name."""
    import sys

    server = sys.modules.get("mlflow.pyfunc.scoring_server")
    parse = getattr(server, "infer_and_parse_data", None)
    if parse is None or getattr(parse, "_latent_models_checked", False):
        return

    def checked(data, *args, **kwargs):
        check_json_tensor(data)
        return parse(data, *args, **kwargs)

    checked._latent_models_checked = True
    checked.__wrapped__ = parse
    server.infer_and_parse_data = checked


_check_json_before_mlflow_parses_it()

try:  # models logged before write-once load with one warning (docs/write-once.md)
    from latent_models_seal import watch_pyfunc_loads
except ImportError:  # a host with only a model's own copy of this package
    pass
else:
    watch_pyfunc_loads()


def in_chunks(fn, x: torch.Tensor, device: torch.device) -> np.ndarray:
    """fn over x, CHUNK rows at a time, gathered on the CPU: any N in bounded memory."""
    out = None
    for start in range(0, len(x), CHUNK):
        y = fn(x[start : start + CHUNK].to(device)).detach().cpu().numpy()
        if out is None:
            out = np.empty((len(x), *y.shape[1:]), dtype=np.float32)
        out[start : start + len(y)] = y
    return out


class ImageModelPyfunc(mlflow.pyfunc.PythonModel):
    """The model behind `context.artifacts` (config + weights), on $LATENT_MODELS_DEVICE
    (default auto), wherever it was logged."""

    kind = ""

    def load_context(self, context):
        self.model = load_model_files(context.artifacts["config"], context.artifacts["weights"], serving_device())
        self.image_shape = self.model.config.image_shape

    def params(self, params: dict | None) -> dict:
        return check_params(self.kind, params)

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
            return from_model_output(in_chunks(self._denoise, x, module_device(self.model)), layout)

    def _denoise(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


class VAEPyfunc(ImageModelPyfunc):
    """mode=reconstruct: images -> reconstructions; mode=sample: rows (n, seed, temperature)
    -> n new images per row; mode=decode: latent vectors (N, latent_dim) -> images."""

    kind = "vae"

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
        if mode not in VAE_MODES:
            raise InvalidInput(f"mode must be one of {', '.join(VAE_MODES)}; got {mode!r}")
        device = module_device(self.model)
        with torch.inference_mode():
            if mode == "reconstruct":
                x, layout = self.images(model_input, clip=bool(params["clip"]))
                return from_model_output(in_chunks(self._reconstruct, x, device), layout)
            if mode == "decode":
                z = to_latents(model_input, self.model.latent_dim)
                return from_model_output(in_chunks(self.model.decode, z, device), generated_layout(self.image_shape))
            sampler = params["sampler"]
            if sampler not in SAMPLERS:
                raise InvalidInput(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
            if sampler == "fitted" and self.prior is None:
                raise InvalidInput(
                    'this model was logged without a fitted prior (prior_components=0); use sampler "normal"'
                )
            images = []
            for n, seed, temperature in sample_requests(model_input, params):
                generator = None if seed is None else torch.Generator().manual_seed(seed)
                if sampler == "fitted":
                    z = self.prior.sample(n, temperature, generator)
                else:  # as ConvVAE.sample draws them, decoded CHUNK at a time
                    z = (
                        torch.randn(
                            n,
                            self.model.latent_dim,
                            generator=generator,
                            device=generator.device if generator is not None else device,
                        )
                        * temperature
                    )
                # Each row decoded on its own: a row's images do not depend on the other rows.
                images.append(in_chunks(self.model.decode, z, device))
            return from_model_output(np.concatenate(images), generated_layout(self.image_shape))

    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self.model.encode(x)
        return self.model.decode(mu)


class ClassifierPyfunc(ImageModelPyfunc):
    """Images in, class probabilities (N, classes) out: the feature extractor behind the
    sample-quality metrics, served too so its predictions can be checked."""

    kind = "classifier"

    def predict(self, context, model_input, params=None):
        self.params(params)
        x, _ = self.images(model_input)
        with torch.inference_mode():
            return in_chunks(lambda b: self.model(b).softmax(dim=1), x, module_device(self.model))


def load_torch_model(model_uri: str, device: torch.device | None = None):
    """(the torch module, its pyfunc wrapper) behind a logged model: for evaluation, on
    `device` (default: the serving device)."""
    wrapper = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    if device is not None:
        wrapper.model.to(device)
    return wrapper.model, wrapper
