"""Models-from-code entry for the digit classifier (see latent_models.serving)."""

import mlflow

from latent_models.serving import ClassifierPyfunc

mlflow.models.set_model(ClassifierPyfunc())
