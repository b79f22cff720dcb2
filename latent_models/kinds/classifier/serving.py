"""The served classifier: images in, class probabilities out (see `serving.pyfunc`)."""

from __future__ import annotations

import numpy as np
import torch
from mlflow.types.schema import Schema, TensorSpec

from latent_models.device import module_device
from latent_models.serving.inputs import MAX_BATCH, input_forms
from latent_models.serving.pyfunc import ImageModelPyfunc, in_chunks


class ClassifierPyfunc(ImageModelPyfunc):
    """Images in, class probabilities (N, classes) out: the feature extractor behind the
    sample-quality metrics, served too so its predictions can be checked."""

    kind = "classifier"

    @classmethod
    def output_schema(cls, config):
        return Schema([TensorSpec(np.dtype(np.float32), (-1, config.classes))])

    @classmethod
    def metadata(cls, config, extras, settings):
        return {
            "inputs": {"images": input_forms(config.image_shape), "max_batch": MAX_BATCH},
            "outputs": f"class probabilities (N, {config.classes})",
        }

    def predict(self, context, model_input, params=None):
        self.params(params)
        x, _ = self.images(model_input)
        with torch.inference_mode():
            return in_chunks(lambda b: self.model(b).softmax(dim=1), x, module_device(self.model))


PYFUNC = ClassifierPyfunc
