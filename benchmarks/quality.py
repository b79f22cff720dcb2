"""Evaluate the default models against classical baselines and compare VAE samplers.

    python benchmarks/quality.py --data_dir ../shared/data [--figures_dir docs/figures]

Trains the default `ae` and `vae` (one at a time, into a throwaway SQLite store unless
--tracking_uri is given), or takes registered ones with --ae_model_uri / --vae_model_uri,
then runs the `evaluate` pipeline on each with its defaults and prints Markdown tables.
Targets: the denoiser beats every classical baseline at the noise level it was trained on;
VAE samples cover all ten digits (class entropy >= 2.25 of 2.303); the fitted prior lowers
FID by >= 2x versus N(0, I).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import click


def _denoiser_table(rows: list[dict], trained: tuple[str, float]) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = [
        "| noise | level | " + " | ".join(methods) + " | model − best baseline |",
        "|---|---:|" + "---:|" * (len(methods) + 1),
    ]
    keys = list(dict.fromkeys((r["noise"], r["level"]) for r in rows))
    for noise, level in keys:
        psnrs = {r["method"]: r["psnr"] for r in rows if (r["noise"], r["level"]) == (noise, level)}
        margin = psnrs["model"] - max(v for m, v in psnrs.items() if m not in ("model", "noisy_input"))
        mark = " (trained)" if (noise, level) == trained else ""
        lines.append(
            f"| {noise} | {level:g}{mark} | " + " | ".join(f"{psnrs[m]:.2f}" for m in methods) + f" | {margin:+.2f} |"
        )
    return "\n".join(lines)


def _sampler_table(rows: list[dict]) -> str:
    lines = [
        "| sampler | FID (classifier features) | class entropy (max 2.303) | mean confidence | rarest class share |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        rarest = min(r[f"class_{c}"] for c in range(10))
        lines.append(
            f"| {r['sampler']} | {r['fid']:.2f} | {r['class_entropy']:.3f} | {r['mean_confidence']:.3f} | "
            f"{rarest:.3f} |"
        )
    return "\n".join(lines)


@click.command()
@click.option("--data_dir", default="", help="dataset root (torchvision layout)")
@click.option("--tracking_uri", default="", help="MLflow store (default: a temporary SQLite file)")
@click.option("--ae_model_uri", default="", help="evaluate this denoiser instead of training the default one")
@click.option("--vae_model_uri", default="", help="evaluate this VAE instead of training the default one")
@click.option("--figures_dir", default="", help="copy the two comparison figures here (e.g. docs/figures)")
def main(data_dir: str, tracking_uri: str, ae_model_uri: str, vae_model_uri: str, figures_dir: str) -> None:
    import mlflow

    from latent_models.config import EvaluateConfig
    from latent_models.evaluation.evaluate import run_evaluate
    from latent_models.kinds.denoiser.config import AEConfig
    from latent_models.kinds.denoiser.recipe import run_ae
    from latent_models.kinds.vae.config import VAEConfig
    from latent_models.kinds.vae.recipe import run_vae

    figures_dir = str(Path(figures_dir).resolve()) if figures_dir else ""
    data_dir = str(Path(data_dir).resolve()) if data_dir else ""
    tmp = tempfile.mkdtemp(prefix="latent-models-quality-")
    os.chdir(tmp)
    mlflow.set_tracking_uri(tracking_uri or f"sqlite:///{tmp}/mlflow.db")
    seconds = {}
    if not ae_model_uri:
        started = time.perf_counter()
        ae_model_uri = run_ae(AEConfig(data_dir=data_dir, experiment_name="quality-ae"))["model_uri"]
        seconds["train ae"] = time.perf_counter() - started
    if not vae_model_uri:
        started = time.perf_counter()
        vae_model_uri = run_vae(VAEConfig(data_dir=data_dir, experiment_name="quality-vae"))["model_uri"]
        seconds["train vae"] = time.perf_counter() - started

    started = time.perf_counter()
    ae = run_evaluate(EvaluateConfig(data_dir=data_dir, model_uri=ae_model_uri))
    seconds["evaluate ae"] = time.perf_counter() - started
    started = time.perf_counter()
    vae = run_evaluate(EvaluateConfig(data_dir=data_dir, model_uri=vae_model_uri))
    seconds["evaluate vae (incl. classifier training on first use)"] = time.perf_counter() - started

    trained = ae["trained_at"]
    print(f"\n## Denoiser ({ae_model_uri}): test PSNR (dB), first 2,000 test images, baselines tuned on validation\n")
    print(_denoiser_table(ae["table"], trained))
    print(f"\n## VAE ({vae_model_uri}): 10,000 samples per sampler against the 10,000 test digits\n")
    print(_sampler_table(vae["table"]))
    print(
        f"\nclassifier test accuracy {vae['classifier_test_accuracy']:.4f}; FID train-vs-test (floor) "
        f"{vae['fid_train_vs_test']:.2f}; test -ELBO {vae['test_neg_elbo']:.2f}, IW-NLL {vae['test_iw_nll']:.2f}"
    )
    print("\n" + ", ".join(f"{k}: {v:.0f} s" for k, v in seconds.items()))

    checks = {
        "denoiser beats every baseline at its trained level": ae["psnr_margin_over_best_baseline"] > 0,
        "class entropy >= 2.25 (N(0, I))": vae["class_entropy_normal"] >= 2.25,
        "class entropy >= 2.25 (fitted prior)": vae["class_entropy_fitted"] >= 2.25,
        "fitted prior FID >= 2x lower": vae["fid_ratio_normal_to_fitted"] >= 2.0,
        "classifier test accuracy >= 99%": vae["classifier_test_accuracy"] >= 0.99,
    }
    print()
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    print(f"(FID ratio {vae['fid_ratio_normal_to_fitted']:.2f}, margin {ae['psnr_margin_over_best_baseline']:+.2f} dB)")
    if figures_dir:
        Path(figures_dir).mkdir(parents=True, exist_ok=True)
        for run_id, artifact, name in (
            (ae["run_id"], "figures/denoiser_vs_baselines.png", "denoiser_vs_baselines.png"),
            (vae["run_id"], "figures/samplers.png", "samplers.png"),
        ):
            shutil.copy(
                mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact), Path(figures_dir) / name
            )
        print(f"figures copied to {figures_dir}")


if __name__ == "__main__":
    main()
