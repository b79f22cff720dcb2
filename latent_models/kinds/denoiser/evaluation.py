"""The denoiser's part of `evaluate`: PSNR/SSIM/MSE at every noise model and several levels,
beside the noisy input and the classical baselines tuned on validation."""

from __future__ import annotations

from tqdm.auto import tqdm

from latent_models import tracking
from latent_models.evaluation import figures
from latent_models.evaluation.scores import TEST_SEED, VAL_SEED
from latent_models.kinds.denoiser.baselines import baselines_named
from latent_models.kinds.denoiser.scores import EVALUATION_LEVELS, compare_denoisers


def evaluate(cfg, model, wrapper, data, trained: dict, run_id: str) -> dict:
    levels = {noise: list(EVALUATION_LEVELS[noise]) for noise in cfg.noise_models()}
    trained_at = (trained["noise"], float(trained["noise_level"])) if "noise" in trained else None
    if trained_at and trained_at[0] in levels and trained_at[1] not in levels[trained_at[0]]:
        levels[trained_at[0]] = sorted(levels[trained_at[0]] + [trained_at[1]])
    test = data.test.images[: cfg.images] if cfg.images else data.test.images
    total = sum(len(v) for v in levels.values())
    with tqdm(total=total, desc="noise levels", unit="level", disable=None) as bar:

        def progress(text):
            bar.set_postfix_str(text)
            bar.update(1)

        rows = compare_denoisers(
            model,
            data.val.images[: cfg.tune_images],
            test,
            levels,
            VAL_SEED,
            TEST_SEED,
            progress,
            baselines_named(cfg.baselines),
        )
    tracking.log_table(rows, "evaluation/denoiser_comparison.json")
    tracking.log_figure(figures.method_comparison(rows, trained_at), figures.DENOISER_VS_BASELINES)

    result: dict = {}
    for r in rows:  # grouped in the UI as psnr/<noise>_<level>/<method>
        result[f"psnr/{r['noise']}_{r['level']:g}/{r['method']}"] = r["psnr"]
    if trained_at and trained_at[0] in levels:
        at = {r["method"]: r for r in rows if (r["noise"], r["level"]) == trained_at}
        baselines = {m: r["psnr"] for m, r in at.items() if m not in ("model", "noisy_input")}
        # Named apart from training's test_psnr: these use the first `images` test images.
        result.update(
            {
                "psnr_model": at["model"]["psnr"],
                "ssim_model": at["model"]["ssim"],
                "mse_model": at["model"]["mse"],
                "psnr_noisy_input": at["noisy_input"]["psnr"],
                **{f"psnr_{m}": v for m, v in baselines.items()},
                "psnr_margin_over_best_baseline": at["model"]["psnr"] - max(baselines.values()),
            }
        )
        tracking.set_tags(
            {
                "trained_noise": trained_at[0],
                "trained_noise_level": trained_at[1],
                "beats_all_baselines": result["psnr_margin_over_best_baseline"] > 0,
            }
        )
    result["table"], result["trained_at"] = rows, trained_at
    return result


def model_metrics(result: dict, cfg) -> list[tuple[int, list[str]]]:
    """(first N test images (0: all), the model's metrics computed on them)."""
    return [
        (
            cfg.images,
            [k for k in result if k.endswith("/model")]
            + ["psnr_model", "ssim_model", "mse_model", "psnr_margin_over_best_baseline"],
        )
    ]
