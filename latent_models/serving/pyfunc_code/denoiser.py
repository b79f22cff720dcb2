"""Models-from-code entry for the denoiser (see latent_models.serving.logged_model)."""

import mlflow

from latent_models.serving.pyfunc import DenoiserPyfunc

mlflow.models.set_model(DenoiserPyfunc())
