"""Models-from-code entry for the VAE (see latent_models.serving)."""

import mlflow

from latent_models.serving import VAEPyfunc

mlflow.models.set_model(VAEPyfunc())
