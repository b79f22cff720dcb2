"""Models-from-code entry for the denoiser (see latent_models.serving)."""

import mlflow

from latent_models.serving import DenoiserPyfunc

mlflow.models.set_model(DenoiserPyfunc())
