"""Time of the served VAE's `score` mode: a 64-image request at k = 100, in process.

    python benchmarks/score.py                      # an untrained default VAE (timing does not depend on weights)
    python benchmarks/score.py --images 64 --k 100 --repeat 9

Saves a VAE of the default size (latent 16, width 32, MNIST's 1x28x28) as the pyfunc model
training logs, loads it with `mlflow.pyfunc.load_model` and times `predict` on fixture test
digits with params {"mode": "score", "k": ..., "seed": 0}: request parsing, the importance
samples and the answer's table, as `mlflow models serve` runs it minus HTTP. Prints each run's
seconds, the median, torch's threads and the machine's load. Target (2-core CPU): median under
one second for 64 images at k = 100.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@click.command()
@click.option("--images", default=64, show_default=True)
@click.option("--k", default=100, show_default=True)
@click.option("--repeat", default=9, show_default=True, help="timed runs after one warm-up")
def main(images: int, k: int, repeat: int) -> None:
    import mlflow
    import torch
    from mlflow.models import Model

    from latent_models.data import load_splits
    from latent_models.kinds.vae.config import VAEModelConfig
    from latent_models.kinds.vae.model import ConvVAE
    from latent_models.serving.logged_model import model_saver

    torch.manual_seed(0)
    model = ConvVAE(VAEModelConfig()).eval()
    digits = load_splits("mnist", str(REPO / "tests" / "fixtures" / "data"), 100, 0, False).test.images
    x = digits[:images, 0].numpy()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "vae")
        model_saver(model, x[:2])(path, Model())
        loaded = mlflow.pyfunc.load_model(path)
        params = {"mode": "score", "k": k, "seed": 0}
        loaded.predict(x, params=params)  # warm-up
        seconds = []
        for _ in range(repeat):
            started = time.perf_counter()
            table = loaded.predict(x, params=params)
            seconds.append(time.perf_counter() - started)
    assert len(table) == images
    print(f"score: {images} images, k={k}: " + ", ".join(f"{s:.3f}" for s in seconds) + " s")
    print(
        f"median {statistics.median(seconds):.3f} s; torch threads {torch.get_num_threads()}, "
        f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
