"""Train the default `ae` and `vae` configurations on full MNIST and print a results table.

    python benchmarks/training.py --data_dir ../shared/data

Runs one training at a time (no two share the CPU), into a throwaway SQLite store unless
--tracking_uri is given. Targets (2-core CPU, each run <= 5 min): AE test PSNR >= 28 dB at
uniform 0.5; VAE test -ELBO <= 93 nats with KL >= 15 nats.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time

import click
import torch


def _row(name, cfg, result, wall):
    return {
        "run": name,
        "config": cfg,
        "wall_s": wall,
        "train_img_s": result["train_images_per_second"],
        "result": result,
    }


@click.command()
@click.option("--data_dir", default="", help="dataset root (torchvision layout)")
@click.option("--tracking_uri", default="", help="MLflow store (default: a temporary SQLite file)")
@click.option("--only", type=click.Choice(["all", "ae", "ae-gaussian", "vae"]), default="all")
def main(data_dir: str, tracking_uri: str, only: str) -> None:
    import mlflow

    from latent_models.kinds.denoiser.config import AEConfig
    from latent_models.kinds.denoiser.recipe import run_ae
    from latent_models.kinds.vae.config import VAEConfig
    from latent_models.kinds.vae.recipe import run_vae

    data_dir = os.path.abspath(data_dir) if data_dir else ""  # before leaving the working directory
    tmp = tempfile.mkdtemp(prefix="latent-models-bench-")
    os.chdir(tmp)
    mlflow.set_tracking_uri(tracking_uri or f"sqlite:///{tmp}/mlflow.db")
    runs = {
        "ae": lambda: run_ae(AEConfig(data_dir=data_dir, register=False, experiment_name="bench-ae")),
        "ae-gaussian": lambda: run_ae(
            AEConfig(data_dir=data_dir, register=False, noise="gaussian", noise_level=0.3, experiment_name="bench-ae")
        ),
        "vae": lambda: run_vae(VAEConfig(data_dir=data_dir, register=False, experiment_name="bench-vae")),
    }
    rows = []
    for name, run in runs.items():
        if only not in ("all", name):
            continue
        started = time.perf_counter()
        result = run()
        rows.append((name, time.perf_counter() - started, result))

    print(
        f"\n{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print("| run | wall time (s) | train images/s | test result |")
    print("|---|---:|---:|---|")
    for name, wall, r in rows:
        if name.startswith("ae"):
            text = (
                f"PSNR {r['test_psnr']:.2f} dB (noisy input {r['test_psnr_noisy']:.2f} dB), SSIM {r['test_ssim']:.4f}"
            )
        else:
            text = (
                f"-ELBO {r['test_neg_elbo']:.2f} nats (recon {r['test_recon']:.2f}, KL {r['test_kl']:.2f}), "
                f"IW-NLL(k=100) {r['test_iw_nll']:.2f} ± {r['test_iw_nll_stderr']:.2f}, "
                f"active units {r['test_active_units']:.0f}"
            )
        print(f"| {name} | {wall:.0f} | {r['train_images_per_second']:.0f} | {text} |")


if __name__ == "__main__":
    main()
