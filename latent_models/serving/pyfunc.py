"""What every pyfunc model shares: what runs inside `mlflow models serve` and
`mlflow.pyfunc.load_model`. Each kind's wrapper (its folder's `serving.py`) subclasses
`ImageModelPyfunc`: it loads its model through the one path every model takes (`config.json`
beside `weights.pt`, see `latent_models.models`), checks the request with `serving.inputs`, and
answers in the caller's form. The code that logs these models is `serving.logged_model`.
"""

from __future__ import annotations

import mlflow
import numpy as np
import torch

from latent_models.device import module_device, serving_device
from latent_models.models import load_model_files
from latent_models.serving.inputs import CHUNK, InvalidInput, behind_rest_server, to_model_input
from latent_models.serving.numbers import check_json_tensor
from latent_models.serving.png import IMAGE_COLUMN


def check_params(defaults: dict, params: dict | None) -> dict:
    """The request's params over a model's `defaults`; an unknown name is refused (a typo
    would otherwise be ignored silently), naming the ones this model takes."""
    unknown = sorted(str(k) for k in (params or {}) if k not in defaults)
    if unknown:
        takes = f"this model takes {', '.join(defaults)}" if defaults else "this model takes no params"
        raise InvalidInput(f"unknown params {unknown}; {takes}")
    return {**defaults, **(params or {})}


def _refuse_unknown_params() -> dict:
    """Make MLflow refuse, not drop, unknown params for these models.

    MLflow's pyfunc enforces the logged params schema before `predict` runs and drops any
    name not in it with a log warning only (`mlflow.pyfunc._enforce_params_schema`), so
    `predict` never sees a typo such as {"temprature": 0.1}. This wraps that function so that,
    for a params schema that is exactly one of ours (same names as a kind's DEFAULT_PARAMS),
    an unknown name is a 400 naming the allowed ones (and the kind's `schema_params` may put a
    value in the form its schema types it); any other model's params go through unchanged.
    Installed once per process when this module is imported, i.e. when one of
    our models is loaded, before any request; each wrapper class adds its params when it is
    defined (`ImageModelPyfunc.__init_subclass__`); tests/test_serving*.py cover it. Returns the
    checks: params schema names -> check.
    """
    import mlflow.pyfunc as pyfunc_module

    enforce = getattr(pyfunc_module, "_enforce_params_schema", None)
    if enforce is None:
        return {}
    # name set -> check; shared by every copy of this package loaded in the process (see
    # serving.isolation), each adding its own kinds.
    checks = getattr(enforce, "_latent_models_checks", None)
    if checks is None:
        checks = {}

        def strict(params, schema):
            names = frozenset(p.name for p in getattr(schema, "params", None) or [])
            if isinstance(params, dict) and names in checks:
                params = checks[names]({str(k): v for k, v in params.items()})
            return enforce(params, schema)

        strict._latent_models_checks = checks
        strict.__wrapped__ = enforce
        pyfunc_module._enforce_params_schema = strict
    return checks


_PARAMS_CHECKS = _refuse_unknown_params()


def _check_json_before_mlflow_parses_it() -> None:
    """Where MLflow's scoring code runs in this process (`mlflow models serve`, `mlflow models
    predict`), check a JSON tensor's leaves before MLflow converts them (see
    numbers.check_json_tensor): it is imported before the model loads, so this runs before any
    request; and take our two forms, a plain tensor and a column of PNGs, past MLflow's generic
    conversions (`_plain_tensor`, `_png_column`). Wraps `scoring_server.infer_and_parse_data`,
    which its JSON path calls by name."""
    import sys

    server = sys.modules.get("mlflow.pyfunc.scoring_server")
    parse = getattr(server, "infer_and_parse_data", None)
    if parse is None or getattr(parse, "_latent_models_checked", False):
        return

    def checked(data, *args, **kwargs):
        check_json_tensor(data)
        schema = args[0] if args else kwargs.get("schema")
        if schema is None and isinstance(data, dict):
            form = list(data)
            parsed = None
            if form == ["inputs"]:
                parsed = _plain_tensor(data["inputs"])
            elif form == ["dataframe_split"]:
                parsed = _png_column(data["dataframe_split"])
            if parsed is not None:
                return parsed
        return parse(data, *args, **kwargs)

    checked._latent_models_checked = True
    checked.__wrapped__ = parse
    server.infer_and_parse_data = checked


def _plain_tensor(inputs) -> np.ndarray | None:
    """`{"inputs": [[...]]}` for a model without an input schema (ours): the array MLflow would
    make (`np.array(inputs)`, in `proto_json_utils._cast_schema_type`), without the deep copy of
    the nested lists it makes first (about as long as the 1-image pass itself). None where
    MLflow should answer (not a list, records, or a ragged list: its own error message)."""
    if not isinstance(inputs, list) or any(isinstance(row, dict) for row in inputs):
        return None
    try:
        return np.array(inputs)
    except (ValueError, TypeError):
        return None


def _png_column(split) -> dict | None:
    """`{"dataframe_split": {"columns": ["image"], "data": [[png], ...]}}`, the base64-PNG form:
    the column as `{"image": [png, ...]}`, which every model of ours reads as it reads the frame,
    without the pandas DataFrame MLflow would build (docs/serving.md, "Serving speed"). None for
    anything else (an index, other columns, a row that is not one string): MLflow parses it, and
    the model or MLflow names what is wrong."""
    if not isinstance(split, dict) or set(split) != {"columns", "data"} or split["columns"] != [IMAGE_COLUMN]:
        return None
    rows = split["data"]
    if not isinstance(rows, list) or not rows:
        return None
    if not all(isinstance(row, list) and len(row) == 1 and isinstance(row[0], str) for row in rows):
        return None
    return PngColumn({IMAGE_COLUMN: [row[0] for row in rows]})


class PngColumn(dict):
    """`{"image": [png, ...]}` that reads in a message as its size, not its megabytes of base64."""

    def __repr__(self) -> str:
        return f"{{'{IMAGE_COLUMN}': [{len(self[IMAGE_COLUMN])} base64 PNGs]}}"


_check_json_before_mlflow_parses_it()

try:  # models logged before write-once load with one warning (docs/write-once.md)
    from latent_models_seal import watch_pyfunc_loads
except ImportError:  # a host with only a model's own copy of this package
    pass
else:
    watch_pyfunc_loads()


# Behind the REST server, a CPU pass over at most this many rows (images, or latents to decode)
# runs on one intra-op thread. MLflow runs each request in a pool thread; each thread that calls
# torch gets its own OpenMP team, and once the teams hold more threads than there are cores
# OpenMP stops spinning, so each operator of a small pass waits for a sleeping helper to wake:
# one 28x28 image through the default U-Net takes about 1 ms on one thread, 2.5-4 ms on two,
# tens of ms on two while another job keeps the cores busy (benchmarks/serving.py).
ONE_THREAD_ROWS = 8
TORCH_THREADS = torch.get_num_threads()  # as the process started (OMP_NUM_THREADS, else the cores)


def forward_pass(fn, x: torch.Tensor, device: torch.device):
    """fn(x on `device`); behind the REST server on the CPU, a pass of at most ONE_THREAD_ROWS
    rows on one intra-op thread, and torch's count restored after it (torch keeps the count
    per calling thread, and a pool thread serves any later request)."""
    if not (behind_rest_server() and device.type == "cpu"):
        return fn(x.to(device))
    torch.set_num_threads(1 if len(x) <= ONE_THREAD_ROWS else TORCH_THREADS)
    try:
        return fn(x.to(device))
    finally:
        torch.set_num_threads(TORCH_THREADS)


SMALL_PASS_TOLERANCE = 1e-5  # the most a fused pass may differ from the eager one (it was 6e-8)


def small_pass_graph(model: torch.nn.Module, image_shape: tuple[int, int, int]):
    """`model` traced and frozen for one-thread CPU passes of a few images of its training shape,
    behind the REST server: oneDNN's graph fuser joins each convolution to its activation, which
    about halves a 1-image pass of the default U-Net (1.08 -> 0.65 ms on one thread, the same
    output to 1e-7; 1.1 to 1.6 times faster for 2 to 8 images, no faster from about 16 on). None
    elsewhere: on a GPU, in-process, or where tracing fails or answers otherwise than the eager
    model (checked here on one image). Run twice on one image so that a first 1-image request
    finds it compiled; other batch sizes compile on first use. TorchScript is deprecated in
    favour of torch.compile, which needs a C++ compiler and tens of seconds where the server starts."""
    import warnings

    if not behind_rest_server() or module_device(model).type != "cpu":
        return None
    example = torch.rand(1, *image_shape).contiguous(memory_format=torch.channels_last)
    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TorchScript's deprecation notices
            torch.jit.enable_onednn_fusion(True)
            graph = torch.jit.freeze(torch.jit.trace(model.eval(), example))
            torch.set_num_threads(1)
            for _ in range(2):
                fused = graph(example)
            same = torch.allclose(fused, model(example), rtol=0, atol=SMALL_PASS_TOLERANCE)
        return graph if same else None
    except Exception:  # noqa: BLE001 - an optimisation only: the eager model stays correct
        return None
    finally:
        torch.set_num_threads(threads)


def in_chunks(fn, x: torch.Tensor, device: torch.device) -> np.ndarray:
    """fn over x, CHUNK rows at a time, gathered on the CPU: any N in bounded memory."""
    out = None
    for start in range(0, len(x), CHUNK):
        y = forward_pass(fn, x[start : start + CHUNK], device).detach().cpu().numpy()
        if out is None:
            out = np.empty((len(x), *y.shape[1:]), dtype=np.float32)
        out[start : start + len(y)] = y
    return out


class ImageModelPyfunc(mlflow.pyfunc.PythonModel):
    """The model behind `context.artifacts` (config + weights), on $LATENT_MODELS_DEVICE
    (default auto), wherever it was logged. A kind's wrapper says what it takes and how it
    describes itself in the logged model."""

    kind = ""
    # The request params and their defaults: the logged params schema is built from these.
    DEFAULT_PARAMS: dict = {}
    # Settings of the logged model and their defaults: set when it is logged
    # (`model_saver(..., settings=...)`), kept as MLflow's `model_config`, read when it loads.
    SETTINGS: dict = {}
    # Any image size this model takes (None: only its training shape; see serving.inputs).
    sizes = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.DEFAULT_PARAMS:
            # Kinds with the same param names share the first one's check: it passes on only the
            # request's own params (each model's defaults are its own schema's, filled by MLflow).
            def check(params: dict) -> dict:
                check_params(cls.DEFAULT_PARAMS, params)
                return cls.schema_params(params)

            _PARAMS_CHECKS.setdefault(frozenset(cls.DEFAULT_PARAMS), check)

    @classmethod
    def schema_params(cls, params: dict) -> dict:
        """The request's params as the logged params schema types them (before MLflow checks them)."""
        return params

    @classmethod
    def requirements(cls, config) -> list[str]:
        """pip requirements this model needs beyond torch, MLflow, Pillow, NumPy and pandas."""
        return []

    @classmethod
    def output_schema(cls, config):
        """The logged output schema (None: none)."""
        return None

    @classmethod
    def metadata(cls, config, extras: set[str], settings: dict) -> dict:
        """The logged model's `metadata`: what it takes (`extras`: the artifacts beside its
        weights; `settings`: its SETTINGS as logged)."""
        return {}

    @classmethod
    def logged_settings(cls, settings: dict | None = None) -> dict:
        """`settings` over SETTINGS' defaults, checked: an unknown name or a bad value is a ValueError."""
        unknown = sorted(str(k) for k in (settings or {}) if k not in cls.SETTINGS)
        if unknown:
            takes = ", ".join(cls.SETTINGS) or "none"
            raise ValueError(f"unknown settings {unknown} for a {cls.kind}; its settings: {takes}")
        settings = {**cls.SETTINGS, **(settings or {})}
        cls.check_settings(settings)
        return settings

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        """Raise ValueError naming a setting whose value this model cannot run with."""

    @classmethod
    def loaded_settings(cls, context) -> dict:
        """The settings a loading model runs with: as logged (a model logged before it had
        them: the defaults), or as overridden where it loads (MLflow's
        MLFLOW_PYFUNC_INFERENCE_CONFIG, or `mlflow.pyfunc.load_model(..., model_config=...)`)."""
        return cls.logged_settings(dict(getattr(context, "model_config", None) or {}))

    def load_context(self, context):
        self.model = load_model_files(context.artifacts["config"], context.artifacts["weights"], serving_device())
        self.image_shape = self.model.config.image_shape

    def params(self, params: dict | None) -> dict:
        return check_params(self.DEFAULT_PARAMS, params)

    def images(self, model_input, clip: bool = False):
        return to_model_input(model_input, clip, self.image_shape, sizes=self.sizes)


def load_torch_model(model_uri: str, device: torch.device | None = None):
    """(the torch module, its pyfunc wrapper) behind a logged model: for evaluation, on
    `device` (default: the serving device)."""
    wrapper = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    if device is not None:
        wrapper.model.to(device)
    return wrapper.model, wrapper
