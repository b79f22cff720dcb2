"""Models-from-code entry for the vae (see latent_models.serving.logged_model).

Run by MLflow from the model's folder, beside the `code/latent_models` it shipped: the
wrapper comes from that copy even where another `latent_models` is already imported (see
latent_models.serving.isolation); run from a checkout (when a model is logged), the
checkout's.
"""

import importlib.util
from pathlib import Path

import mlflow

_isolation = Path(__file__).resolve().parent / "code" / "latent_models" / "serving" / "isolation.py"
if _isolation.is_file():
    _spec = importlib.util.spec_from_file_location("_latent_models_isolation", _isolation)
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    model = _module.own_model(__file__, "latent_models.serving.pyfunc", "VAEPyfunc")
else:
    from latent_models.serving.pyfunc import VAEPyfunc

    model = VAEPyfunc()

mlflow.models.set_model(model)
