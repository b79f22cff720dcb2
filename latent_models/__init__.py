"""latent-models: denoising autoencoders and VAEs on MNIST-style images, tracked in MLflow."""

__version__ = "0.1.0"
