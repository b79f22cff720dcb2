"""Denoise real photographs through the served denoiser's own `predict`: one noise-map U-Net
for every σ, against non-local means and BM3D.

    python benchmarks/photo_sets.py --out photo-sets      # the photographs (docs/photo-data.md)
    python benchmarks/photos.py --photos photo-sets [--model_uri URI] [--sigmas 15,25,50] [--epochs N]

BM3D comes from the `bm3d` package, the opt-in extra `pip install -e ".[bm3d]"` (also evaluate's opt-in
baseline; its licence is free for non-commercial use only).

The photographs are `benchmarks/photo_sets.py`'s, split by image: `train/` (77 photographs from
Debian packages and wheels) trains, `val/` (8 others) chooses (the epoch kept, NLM's h), and
`test/` (astronaut, chelsea, camera) is reported here and never chosen on.

The model: without --model_uri, one grey U-Net is trained through `run_ae` on <photos> as the
`ae` entry point trains it (`mlflow run . -e ae -P dataset=folder -P data_dir=<photos> ...`, the
settings printed): random 48x48 crops, fresh each epoch; the residual head with MSE; Gaussian
noise with σ drawn per crop from [0, 55/255] and given as an input (sigma_max, FFDNet's
noise-level map); the epoch kept is the best validation PSNR at σ = 25. With --model_uri, that
logged or registered model instead (e.g. models:/photo-denoiser@champion).

Each held-out image, at full size, gets Gaussian noise N(0, σ/255) from a fixed seed, clipped to
[0, 1] as a served image is; the same noisy image goes to every method:
- non-local means (scikit-image, fast mode, 5x5 patches, 13x13 search window, told σ, h =
  factor x σ, the factor picked per σ on one validation photograph per colour/grey);
- BM3D (`bm3d.bm3d`, `bm3d.bm3d_rgb` for colour, told σ, its default profile);
- the served model: `mlflow.pyfunc.load_model(uri).predict(image, params)`, the code
  `mlflow models serve` runs, with the image as a float tensor of its own size: `model` told σ
  (params sigma = σ/255), `model_auto` with sigma=auto (σ estimated from the image), `model_x8`
  told σ with ensemble=8. A colour image goes through the grey model as the served model takes
  it: luma and chroma, each told its level (kinds/denoiser/colour.py).
PSNR in dB over all pixels and channels, images in [0, 1].

Speed: seconds per megapixel of each method over the held-out images, side by side in this one
run (BM3D only when computed, not read from its cache). Memory: with --rss_megapixels (default
12), a fresh process loads the model and denoises one noisy colour photo of that size (the
astronaut, resized), and reports its peak RSS and time.

Prints the tables, the command, the machine, the load and the wall times, and writes
<out>/photos_benchmark.png (a crop of the astronaut at σ = 25: clean / noisy / NLM / BM3D / model)
and <out>/results.json. BM3D's outputs are cached in <out>/cache.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

TEST_IMAGES = ("astronaut", "chelsea", "camera")
# Validation photographs NLM's h is picked on (benchmarks/photo_sets.py's val/).
NLM_TUNE_IMAGES = {"colour": "sklearn-china", "grey": "plasma-Grey"}
NLM_H_FACTORS = (0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)
FIGURE_IMAGE, FIGURE_SIGMA = "astronaut", 25
METHODS = ("noisy", "nlm", "bm3d", "model", "model_auto", "model_x8")
LABELS = {
    "noisy": "noisy input",
    "nlm": "non-local means",
    "bm3d": "BM3D",
    "model": "U-Net",
    "model_auto": "U-Net, sigma=auto",
    "model_x8": "U-Net ×8",
}
SIGMA_MAX, VALIDATED_AT = 55, 25  # the training range and the validation level, 0-255 scale


def psnr(clean: np.ndarray, other: np.ndarray) -> float:
    mse = float(np.mean((clean.astype(np.float64) - np.clip(other, 0, 1).astype(np.float64)) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def load_png(path: Path) -> np.ndarray:
    """float32 in [0, 1]: (H, W) grey or (H, W, 3) colour."""
    from PIL import Image

    image = Image.open(path)
    return np.asarray(image.convert("L" if image.mode in ("L", "1", "I;16") else "RGB"), np.float32) / 255.0


def add_noise(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Gaussian noise of std sigma/255, clipped to [0, 1]: the same draw for every method."""
    rng = np.random.default_rng(seed)
    return np.clip(clean + rng.normal(0.0, sigma / 255.0, clean.shape), 0.0, 1.0).astype(np.float32)


def image_seed(seed: int, name: str, sigma: float) -> int:
    return seed * 1_000_003 + sum(map(ord, name)) * 1009 + int(sigma * 10)


def nlm(noisy: np.ndarray, sigma: float, factor: float) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    s = sigma / 255.0
    channel_axis = -1 if noisy.ndim == 3 else None
    return denoise_nl_means(
        noisy, h=factor * s, sigma=s, fast_mode=True, patch_size=5, patch_distance=6, channel_axis=channel_axis
    ).astype(np.float32)


def tune_nlm(photos: Path, sigma: float, seed: int) -> dict[str, float]:
    """NLM's h factor per kind (colour, grey): the best PSNR on one validation photograph at this σ."""
    factors = {}
    for kind, name in NLM_TUNE_IMAGES.items():
        clean = load_png(photos / "val" / f"{name}.png")
        noisy = add_noise(clean, sigma, image_seed(seed, name, sigma))
        factors[kind] = max(NLM_H_FACTORS, key=lambda f: psnr(clean, nlm(noisy, sigma, f)))
    return factors


def bm3d_denoise(noisy: np.ndarray, sigma: float, cache: Path) -> tuple[np.ndarray, float | None]:
    """BM3D's output, and its seconds when computed now (None: read from the cache)."""
    if cache.exists():
        return np.load(cache), None
    import bm3d  # checked in main

    started = time.perf_counter()
    s = sigma / 255.0
    out = bm3d.bm3d(noisy, s) if noisy.ndim == 2 else bm3d.bm3d_rgb(noisy, s)
    seconds = time.perf_counter() - started
    out = np.asarray(out, dtype=np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out, seconds


def served(loaded, noisy: np.ndarray, sigma: float | None, ensemble: int = 1) -> np.ndarray:
    """The served model's answer for one (H, W) or (H, W, 3) image: a float tensor of its own
    size through `predict`, told σ (0-255 scale; None: sigma=auto)."""
    x = noisy[None, None] if noisy.ndim == 2 else noisy.transpose(2, 0, 1)[None]
    params = {"sigma": "auto" if sigma is None else sigma / 255.0, "ensemble": ensemble}
    y = np.asarray(loaded.predict(np.ascontiguousarray(x), params=params))
    return y[0, 0] if noisy.ndim == 2 else y[0].transpose(1, 2, 0)


def train(photos: Path, opts: dict, tmp: Path) -> dict:
    from latent_models.kinds.denoiser.config import AEConfig
    from latent_models.kinds.denoiser.recipe import run_ae

    cfg = AEConfig(
        dataset="folder",
        data_dir=str(photos),
        image_size=opts["patch"],
        channels="1",
        image_policy="patches",
        patches_per_image=opts["patches_per_image"],
        noise="gaussian",
        noise_level=VALIDATED_AT / 255.0,
        sigma_max=SIGMA_MAX / 255.0,
        residual=True,
        epochs=opts["epochs"],
        batch_size=opts["batch_size"],
        lr=opts["lr"],
        width=opts["width"],
        arch="unet",
        seed=opts["seed"],
        register=False,
        download=False,
        experiment_name="photos-benchmark",
        run_name="photos-noise-map",
        device=opts["device"],
        system_metrics=False,
        checkpoint_dir=str(tmp / "checkpoints"),
    )
    return run_ae(cfg)


def rss_child(model_uri: str, megapixels: float, photos: Path) -> None:
    """In a fresh process: load the model, denoise one noisy colour photo of `megapixels`
    (told σ = 25), print peak RSS and seconds as JSON."""
    import mlflow
    from PIL import Image

    loaded = mlflow.pyfunc.load_model(model_uri)
    loaded_mib = _peak_mib()
    image = Image.open(photos / "test" / "astronaut.png").convert("RGB")
    height = int(round((megapixels * 1e6 * 3 / 4) ** 0.5))
    width = int(round(megapixels * 1e6 / height))
    clean = np.asarray(image.resize((width, height), Image.Resampling.BICUBIC), np.float32) / 255.0
    noisy = add_noise(clean, 25, 0)
    del clean
    started = time.perf_counter()
    out = served(loaded, noisy, 25)
    seconds = time.perf_counter() - started
    peak = _peak_mib()
    print(json.dumps({"width": width, "height": height, "shape": list(out.shape), "loaded_mib": loaded_mib,
                      "peak_mib": peak, "seconds": seconds}))  # fmt: skip


def _peak_mib() -> float:
    """This process's peak RSS (VmHWM; getrusage's maxrss would keep the parent's from before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _mean_table(results: dict) -> str:
    lines = [
        "| σ (0–255) | noisy | NLM | BM3D | model | model, sigma=auto | model ×8 | model − BM3D | auto − model |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sigma, per_image in results.items():
        mean = {m: float(np.mean([r[m] for r in per_image.values()])) for m in METHODS}
        lines.append(
            f"| {sigma:g} | {mean['noisy']:.2f} | {mean['nlm']:.2f} | {mean['bm3d']:.2f} | **{mean['model']:.2f}** | "
            f"{mean['model_auto']:.2f} | {mean['model_x8']:.2f} | {mean['model'] - mean['bm3d']:+.2f} | "
            f"{mean['model_auto'] - mean['model']:+.2f} |"
        )
    return "\n".join(lines)


def _image_table(results: dict) -> str:
    lines = [
        "| σ | image | noisy | NLM (h factor) | BM3D | model | auto (σ estimated) | model ×8 |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for sigma, per_image in results.items():
        for name, r in per_image.items():
            lines.append(
                f"| {sigma:g} | {name} ({r['kind']}) | {r['noisy']:.2f} | {r['nlm']:.2f} ({r['nlm_factor']:g}) | "
                f"{r['bm3d']:.2f} | {r['model']:.2f} | {r['model_auto']:.2f} ({r['sigma_estimate']:.1f}) | "
                f"{r['model_x8']:.2f} |"
            )
    return "\n".join(lines)


def _speed_table(seconds: dict, megapixels: float) -> str:
    lines = ["| method | s per megapixel |", "|---|---:|"]
    for method, value in seconds.items():
        lines.append(f"| {LABELS[method]} | {value / megapixels:.2f} |")
    return "\n".join(lines)


def _figure(path: Path, clean: np.ndarray, outputs: dict, psnrs: dict, sigma: float, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top, left, size = 30, 150, 200  # astronaut: the face, hair and a smooth background
    crop = (slice(top, top + size), slice(left, left + size))
    shown = ("noisy", "nlm", "bm3d", "model", "model_x8")
    panels = [("clean", clean, None)] + [(m, outputs[m], psnrs[m]) for m in shown]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
    for ax, (key, image, value) in zip(axes, panels):
        ax.imshow(np.clip(image[crop], 0, 1), cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(LABELS.get(key, key) + ("" if value is None else f"\n{value:.2f} dB"), fontsize=11)
        ax.axis("off")
    fig.suptitle(f"{name}, Gaussian noise σ = {sigma:g}/255 (held out; crop; PSNR over the whole image)")
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=90)
    plt.close(fig)


@click.command()
@click.option("--photos", default="photo-sets", show_default=True, help="benchmarks/photo_sets.py's output folder")
@click.option("--out", default="photos-benchmark", show_default=True, help="output folder (cache, figure, results)")
@click.option("--sigmas", default="15,25,50", show_default=True, help="noise levels on the 0-255 scale")
@click.option("--model_uri", default="", help="a logged noise-map denoiser to measure (default: train one now)")
@click.option("--epochs", default=30, show_default=True, help="training epochs (without --model_uri)")
@click.option("--patch", default=48, show_default=True, help="training crop size (image_size)")
@click.option("--patches_per_image", default=64, show_default=True, help="random crops per training image per epoch")
@click.option("--batch_size", default=8, show_default=True)
@click.option("--lr", default=5e-3, show_default=True, help="peak learning rate (one-cycle)")
@click.option("--width", default=16, show_default=True, help="U-Net width (channels of the first layer)")
@click.option("--seed", default=0, show_default=True, help="seed of training and of the test noise")
@click.option("--device", default="auto", show_default=True)
@click.option("--tracking_uri", default="", help="MLflow store (default: a SQLite file in a temporary folder)")
@click.option(
    "--rss_megapixels", default=12.0, show_default=True, help="peak RSS of one colour photo this size (0: skip)"
)
@click.option("--rss_child", default="", hidden=True, help="internal: the fresh process of the memory check")
def main(**opts) -> None:
    photos = Path(opts["photos"]).resolve()
    if opts["rss_child"]:
        return rss_child(opts["rss_child"], opts["rss_megapixels"], photos)
    import mlflow
    import torch

    from latent_models.kinds.denoiser.baselines import BM3D_MISSING, bm3d_installed
    from latent_models.kinds.denoiser.colour import estimate_sigma

    if not bm3d_installed():  # before training, not after
        raise click.ClickException(BM3D_MISSING)
    if not (photos / "train").is_dir() or not (photos / "test").is_dir():
        raise click.ClickException(f"{photos}: no train/ and test/; run python benchmarks/photo_sets.py --out {photos}")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    command = " ".join(["python benchmarks/photos.py", shlex.join(sys.argv[1:])]).strip()
    load_before = os.getloadavg()
    started_all = time.perf_counter()
    out = Path(opts["out"]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="latent-models-photos-"))
    os.chdir(tmp)
    mlflow.set_tracking_uri(
        opts["tracking_uri"] or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{tmp}/mlflow.db"
    )
    seconds, run = {}, None
    model_uri = opts["model_uri"]
    if not model_uri:
        t = time.perf_counter()
        run = {k: v for k, v in train(photos, opts, tmp).items() if isinstance(v, (str, int, float, type(None)))}
        seconds["training (run_ae)"] = time.perf_counter() - t
        model_uri = run["model_uri"]
        print(f"trained: {json.dumps(run)}", flush=True)
    loaded = mlflow.pyfunc.load_model(model_uri)
    sigma_max = loaded.unwrap_python_model().sigma_max
    if not sigma_max:
        raise click.ClickException(f"{model_uri} is not a noise-map denoiser (sigma_max = 0)")
    sigmas = [float(s) for s in opts["sigmas"].split(",")]
    clean = {name: load_png(photos / "test" / f"{name}.png") for name in TEST_IMAGES}
    megapixels = sum(x.shape[0] * x.shape[1] for x in clean.values()) / 1e6 * len(sigmas)
    timing = {m: 0.0 for m in METHODS if m != "noisy"}
    bm3d_computed = True
    results, figure = {}, None
    for sigma in sigmas:
        factors = tune_nlm(photos, sigma, opts["seed"])
        results[sigma] = {}
        for name, x in clean.items():
            noisy = add_noise(x, sigma, image_seed(opts["seed"], name, sigma))
            kind = "colour" if x.ndim == 3 else "grey"
            outputs = {"noisy": noisy}
            t = time.perf_counter()
            outputs["nlm"] = nlm(noisy, sigma, factors[kind])
            timing["nlm"] += time.perf_counter() - t
            cache = out / "cache" / f"bm3d-{name}-sigma{sigma:g}-seed{opts['seed']}.npy"
            outputs["bm3d"], took = bm3d_denoise(noisy, sigma, cache)
            bm3d_computed &= took is not None
            timing["bm3d"] += took or 0.0
            for method, told, ensemble in (("model", sigma, 1), ("model_auto", None, 1), ("model_x8", sigma, 8)):
                t = time.perf_counter()
                outputs[method] = served(loaded, noisy, told, ensemble)
                timing[method] += time.perf_counter() - t
            row = {m: psnr(x, outputs[m]) for m in METHODS}
            chw = noisy[None] if noisy.ndim == 2 else noisy.transpose(2, 0, 1)
            estimate = 255 * min(estimate_sigma(torch.from_numpy(np.ascontiguousarray(chw))), sigma_max)
            results[sigma][name] = {**row, "kind": kind, "nlm_factor": factors[kind], "sigma_estimate": estimate}
            print(f"σ={sigma:g} {name}: " + ", ".join(f"{m} {v:.2f}" for m, v in row.items()), flush=True)
            if name == FIGURE_IMAGE and sigma == FIGURE_SIGMA:
                figure = (x, outputs, row)
    if not bm3d_computed:
        del timing["bm3d"]  # read from the cache: no time to report
    if figure is not None:
        _figure(out / "photos_benchmark.png", *figure, FIGURE_SIGMA, FIGURE_IMAGE)
    rss = None
    if opts["rss_megapixels"]:
        child = [sys.executable, str(Path(__file__).resolve()), "--photos", str(photos), "--rss_child", model_uri]
        child += ["--rss_megapixels", str(opts["rss_megapixels"])]
        done = subprocess.run(
            child, capture_output=True, text=True, env={**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
        )
        lines = done.stdout.strip().splitlines()
        rss = json.loads(lines[-1]) if done.returncode == 0 and lines else {"error": done.stderr[-2000:]}
    seconds["total"] = time.perf_counter() - started_all
    (out / "results.json").write_text(
        json.dumps(
            {
                "command": command,
                "model_uri": model_uri,
                "run": run,
                "results": {f"{s:g}": r for s, r in results.items()},
                "seconds_per_megapixel": {m: v / megapixels for m, v in timing.items()},
                "memory": rss,
                "seconds": seconds,
            },
            indent=2,
        )
    )
    print(f"\n```bash\n{command}\n```\n")
    print(f"Model: {model_uri} (sigma_max {sigma_max * 255:.1f}/255)\n")
    print("Mean PSNR (dB) over the held-out images " + ", ".join(TEST_IMAGES) + ":\n")
    print(_mean_table(results) + "\n")
    print(_image_table(results) + "\n")
    print(f"Speed over the held-out images ({megapixels:.2f} megapixels in all, grey and colour):\n")
    print(_speed_table(timing, megapixels) + "\n")
    if rss:
        print(f"Memory: {json.dumps(rss)}")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), CUDA {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}; "
        f"1-minute load average {load_before[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    print("Wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    if figure is not None:
        print(f"Figure: {out / 'photos_benchmark.png'}")


if __name__ == "__main__":
    main()
