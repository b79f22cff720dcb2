"""Models-from-code entry for the classifier (see latent_models.serving.logged_model)."""

import mlflow

from latent_models.serving.pyfunc import ClassifierPyfunc

mlflow.models.set_model(ClassifierPyfunc())
