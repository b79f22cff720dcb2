"""Models-from-code entry for the vae (see latent_models.serving.logged_model)."""

import mlflow

from latent_models.serving.pyfunc import VAEPyfunc

mlflow.models.set_model(VAEPyfunc())
