"""Design choices for photographs, one model per σ: the U-Net against non-local means and BM3D.

The served model is measured by benchmarks/photos.py, through its own `predict`; this script
applies the network with its own code to compare heads, colour schemes, the self-ensemble and
clipping, one non-blind model per σ (docs/results.md, "Design choices, one model per σ").

    python benchmarks/photos_per_sigma.py [--out DIR] [--sigmas 15,25,50] [--epochs N] [--tracking_uri URI]

BM3D comes from the `bm3d` package, the opt-in extra `pip install -e ".[bm3d]"` (also evaluate's opt-in
baseline; its licence is free for non-commercial use only).

The images are the natural photographs that ship inside scikit-image's wheel (no download),
split *by image*, fixed:

- test (held out, never seen in training): astronaut (colour, 512x512), chelsea (colour, the
  cat, 300x451), camera (grey, 512x512);
- train: coffee, rocket, hubble_deep_field, retina, immunohistochemistry (colour); moon, page,
  text, coins, brick, grass, gravel, cell, clock (grey). The folder dataset carves one of these
  out, by image, for validation (val_fraction): it picks the epoch whose weights are kept.

Left out: `cat` (the same picture as chelsea), the synthetic images (colorwheel, shepp_logan,
horse, logo, checkerboard...) and those scikit-image fetches from the internet.

Steps: the images are written as PNGs to <out>/photos/train and <out>/photos/test; for each
σ (on the 0-255 scale) one non-blind denoiser is trained through `run_ae` on the train folder
(image_policy=patches: random crops, fresh each epoch; one model per σ, as BM3D is told σ;
the residual head, trained with MSE), and one more at σ/√3 for the luma of colour photos.
Then each held-out image, at full size, gets Gaussian noise N(0, σ/255) from a fixed seed,
clipped to [0, 1] as the served model receives an image (and as training corrupts it); the same
noisy image goes to every method. Methods: the noisy input; non-local means (scikit-image,
fast mode, 5x5 patches, 13x13 search window, told σ, its h = factor x σ with the factor picked
per σ and per colour/grey on one training image each, coffee and coins); BM3D (`bm3d.bm3d` for
grey, `bm3d.bm3d_rgb` for colour, sigma_psd = σ/255, its default profile); and the model,
applied to the whole image at once (the U-Net is fully convolutional: H and W are
reflection-padded to multiples of 4 and the output is cropped back), once (what the served
model returns) and as its self-ensemble ("model ×8": the mean over the 8 flips and quarter
turns of the image, each turned back; 8 times the inference). PSNR in dB over all pixels and
channels, images in [0, 1].

The models are grey (channels=1: colour training images converted to luma). A colour held-out
image goes through them by one of the schemes of `colour_denoise` (per_channel, chroma,
luma_chroma: CBM3D's luma-chrominance transform, with one more model trained at σ/√3 for the
luma); --colour auto, the default, picks the best per σ on coffee, a training image, as NLM's
h is picked (`pick_colour_scheme`; docs/results.md has the figures). A 3-channel model (--channels auto) would see
a grey held-out image's noise, replicated to RGB, as the same in all three channels, which it
never saw in training; it then gets the noisy grey image replicated to RGB and the mean of its
three output channels is kept. With the sigmoid head at σ=25 the RGB model was worse than
the grey one on every image: 1.42 dB on camera, 0.53 on astronaut and 0.17 on chelsea (docs/results.md).

Prints the tables (mean over the held-out images, and per image), the command, the machine and
the wall times, and writes <out>/photos_benchmark.png (a crop of one colour test image at
σ=25: clean / noisy / NLM / BM3D / model) and <out>/results.json. BM3D's outputs are cached in
<out>/cache (it is the slowest classical method, about 1.5 minutes per σ here), so a rerun
with other training settings only trains and evaluates the models; delete the cache to time
a cold run. Goal: the model beats the best classical method at every σ.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

# the script's folder is on sys.path: the served-model benchmark's noise, NLM and PSNR, shared
from photos import add_noise, image_seed, nlm, psnr  # noqa: E402

TEST_IMAGES = ("astronaut", "chelsea", "camera")
TRAIN_IMAGES = (
    "coffee",
    "rocket",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "moon",
    "page",
    "text",
    "coins",
    "brick",
    "grass",
    "gravel",
    "cell",
    "clock",
)
NLM_TUNE_IMAGES = {"colour": "coffee", "grey": "coins"}  # training images: NLM's h is picked on these
NLM_H_FACTORS = (0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)
FIGURE_IMAGE, FIGURE_SIGMA = "astronaut", 25
METHODS = ("noisy", "nlm", "bm3d", "model", "model_x8")  # model_x8: its self-ensemble (model_denoise)


def load_image(name: str) -> np.ndarray:
    """float32 in [0, 1]: (H, W) grey or (H, W, 3) colour."""
    import skimage.data

    return getattr(skimage.data, name)().astype(np.float32) / 255.0


def write_photos(root: Path) -> None:
    from PIL import Image

    for split, names in (("train", TRAIN_IMAGES), ("test", TEST_IMAGES)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for name in names:
            path = root / split / f"{name}.png"
            if not path.exists():
                Image.fromarray(np.round(load_image(name) * 255).astype(np.uint8)).save(path)


def tune_nlm(sigma: float, seed: int) -> dict[str, float]:
    """NLM's h factor per kind (colour, grey): the best PSNR on one training image at this σ."""
    factors = {}
    for kind, name in NLM_TUNE_IMAGES.items():
        clean = load_image(name)
        noisy = add_noise(clean, sigma, image_seed(seed, name, sigma))
        factors[kind] = max(NLM_H_FACTORS, key=lambda f: psnr(clean, nlm(noisy, sigma, f)))
    return factors


def bm3d_denoise(noisy: np.ndarray, sigma: float, cache: Path) -> np.ndarray:
    if cache.exists():
        return np.load(cache)
    import bm3d  # checked in main

    s = sigma / 255.0
    out = bm3d.bm3d(noisy, s) if noisy.ndim == 2 else bm3d.bm3d_rgb(noisy, s)
    out = np.asarray(out, dtype=np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def model_denoise(model, noisy: np.ndarray, self_ensemble: bool = False) -> np.ndarray:
    """The whole image at once: reflection-padded to multiples of 4 (two 2x poolings), cropped back.
    A grey image goes in replicated to RGB when the model has 3 channels; out: the channels' mean.
    `self_ensemble`: the mean over the 8 flips and quarter turns of the image, each turned back."""
    import torch
    import torch.nn.functional as F

    def run(x):
        h, w = x.shape[-2:]
        with torch.inference_mode():
            return model(F.pad(x, (0, (-w) % 4, 0, (-h) % 4), mode="reflect"))[..., :h, :w]

    def ensemble(x):
        outputs = []
        for flip in (False, True):
            xf = x.flip(-1) if flip else x
            for k in range(4):
                y = torch.rot90(run(torch.rot90(xf, k, (-2, -1))), -k, (-2, -1))
                outputs.append(y.flip(-1) if flip else y)
        return torch.stack(outputs).mean(0)

    channels = model.config.channels
    x = torch.from_numpy(noisy)
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)  # (C, H, W)
    grey = x.shape[0] == 1
    if grey and channels == 3:
        x = x.expand(3, -1, -1)
    # a grey model denoises each colour channel on its own (a batch of C one-channel images)
    x = x[None] if channels == 3 else x[:, None]
    y = ensemble(x) if self_ensemble else run(x)
    y = y[0] if channels == 3 else y[:, 0]  # (C, H, W)
    if grey:
        return y.mean(0).numpy()
    return y.permute(1, 2, 0).contiguous().numpy()


# Rows: luma, then two chroma axes; orthonormal, so noise N(0, σ²) in R, G and B stays
# N(0, σ²), independent, on each axis (CBM3D's opponent colour space).
OPPONENT = np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]]) / np.sqrt([[3], [2], [6]])


def luma_sigma(sigma: float) -> float:
    """The noise level of the luma channel mean(R, G, B) when each channel has σ."""
    return sigma / np.sqrt(3)


COLOUR_SCHEMES = ("per_channel", "chroma", "luma_chroma")


def colour_denoise(scheme: str, model, luma_model, noisy: np.ndarray, self_ensemble: bool = False) -> np.ndarray:
    """A colour photo through grey models. per_channel: R, G and B apart. chroma and luma_chroma
    work as CBM3D filters colour, on an orthonormal luma-chrominance transform: the two chroma
    axes, shifted by 0.5 into the images' range (noise σ), go through `model`; chroma is smooth,
    so it comes out far cleaner than R, G and B denoised apart (which also leaves colour
    blotches). The luma comes from the per-channel output (chroma), or is mean(R, G, B), whose
    noise is σ/√3, through `luma_model`, trained at that level (luma_chroma; but where a pixel
    is clipped at 0 or 1 its noise is not that of a clipped σ/√3 image)."""
    if scheme == "per_channel":
        return model_denoise(model, noisy, self_ensemble)
    axes = noisy.astype(np.float64) @ OPPONENT.T
    if scheme == "luma_chroma":
        luma = model_denoise(luma_model, noisy.mean(-1), self_ensemble) * np.sqrt(3)
    else:
        luma = model_denoise(model, noisy, self_ensemble) @ OPPONENT[0]
    chroma = [model_denoise(model, (axes[..., k] + 0.5).astype(np.float32), self_ensemble) - 0.5 for k in (1, 2)]
    return (np.stack([luma, *chroma], -1) @ OPPONENT).astype(np.float32)


def pick_colour_scheme(sigma: float, seed: int, model, luma_model) -> dict[str, float]:
    """PSNR of each colour scheme on the colour training image NLM is tuned on (coffee)."""
    name = NLM_TUNE_IMAGES["colour"]
    clean = load_image(name)
    noisy = add_noise(clean, sigma, image_seed(seed, name, sigma))
    return {scheme: psnr(clean, colour_denoise(scheme, model, luma_model, noisy)) for scheme in COLOUR_SCHEMES}


def train(sigma: float, photos: Path, opts: dict, tmp: Path) -> dict:
    from latent_models.kinds.denoiser.config import AEConfig
    from latent_models.kinds.denoiser.recipe import run_ae

    cfg = AEConfig(
        dataset="folder",
        data_dir=str(photos),
        image_size=opts["patch"],
        channels=opts["channels"],
        image_policy="patches",
        patches_per_image=opts["patches_per_image"],
        val_fraction=0.1,
        test_fraction=0.1,
        noise="gaussian",
        noise_level=sigma / 255.0,
        epochs=opts["epochs"],
        batch_size=opts["batch_size"],
        lr=opts["lr"],
        max_grad_norm=opts["max_grad_norm"],
        width=opts["width"],
        arch="unet",
        residual=opts["residual"],
        seed=opts["seed"],
        register=False,
        download=False,
        experiment_name="photos-benchmark",
        run_name=f"photos-sigma{sigma:g}",
        device=opts["device"],
        system_metrics=False,
        checkpoint_dir=str(tmp / "checkpoints"),
    )
    return run_ae(cfg)


def _mean_table(results: dict) -> str:
    lines = [
        "| σ (0–255) | noisy | NLM | BM3D | model | model ×8 | model − best classical | ×8 − best classical |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sigma, per_image in results.items():
        mean = {m: float(np.mean([r[m] for r in per_image.values()])) for m in METHODS}
        best = max(mean["nlm"], mean["bm3d"])
        lines.append(
            f"| {sigma:g} | {mean['noisy']:.2f} | {mean['nlm']:.2f} | {mean['bm3d']:.2f} | "
            f"**{mean['model']:.2f}** | **{mean['model_x8']:.2f}** | {mean['model'] - best:+.2f} | "
            f"{mean['model_x8'] - best:+.2f} |"
        )
    return "\n".join(lines)


def _image_table(results: dict) -> str:
    lines = [
        "| σ | image | noisy | NLM (h factor) | BM3D | model | model ×8 | ×8 − best classical |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for sigma, per_image in results.items():
        for name, r in per_image.items():
            margin = r["model_x8"] - max(r["nlm"], r["bm3d"])
            lines.append(
                f"| {sigma:g} | {name} ({r['kind']}) | {r['noisy']:.2f} | {r['nlm']:.2f} ({r['nlm_factor']:g}) | "
                f"{r['bm3d']:.2f} | {r['model']:.2f} | {r['model_x8']:.2f} | {margin:+.2f} |"
            )
    return "\n".join(lines)


def _figure(path: Path, clean: np.ndarray, outputs: dict, psnrs: dict, sigma: float, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top, left, size = 30, 150, 200  # astronaut: the face, hair and a smooth background
    crop = (slice(top, top + size), slice(left, left + size))
    panels = [("clean", clean, None)] + [(m, outputs[m], psnrs[m]) for m in METHODS]
    labels = {
        "noisy": "noisy input",
        "nlm": "non-local means",
        "bm3d": "BM3D",
        "model": "U-Net",
        "model_x8": "U-Net ×8",
    }
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
    for ax, (key, image, value) in zip(axes, panels):
        ax.imshow(np.clip(image[crop], 0, 1), cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(labels.get(key, key) + ("" if value is None else f"\n{value:.2f} dB"), fontsize=11)
        ax.axis("off")
    fig.suptitle(f"{name}, Gaussian noise σ = {sigma:g}/255 (held out; crop; PSNR over the whole image)")
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=90)
    plt.close(fig)


@click.command()
@click.option("--out", default="photos-benchmark", show_default=True, help="output folder (PNGs, cache, figure)")
@click.option("--sigmas", default="15,25,50", show_default=True, help="noise levels on the 0-255 scale")
@click.option("--epochs", default=36, show_default=True, help="training epochs per σ")
@click.option("--patch", default=48, show_default=True, help="training crop size (image_size)")
@click.option("--patches_per_image", default=64, show_default=True, help="random crops per training image per epoch")
@click.option("--batch_size", default=8, show_default=True)
@click.option("--lr", default=5e-3, show_default=True, help="peak learning rate (one-cycle)")
@click.option("--width", default=16, show_default=True, help="U-Net width (channels of the first layer)")
@click.option("--max_grad_norm", default=0.0, show_default=True, help="clip the gradients' global norm (0: off)")
@click.option(
    "--residual/--no_residual",
    default=True,
    show_default=True,
    help="the residual head: output = input + a learned correction, trained with MSE (DnCNN's residual "
    "learning); --no_residual: the sigmoid head, trained with BCE (MNIST's default)",
)
@click.option(
    "--channels",
    type=click.Choice(["auto", "1", "3"]),
    default="1",
    show_default=True,
    help="1: a grey model, colour images denoised per channel; auto/3: an RGB model",
)
@click.option(
    "--colour",
    type=click.Choice(["auto", *COLOUR_SCHEMES]),
    default="auto",
    show_default=True,
    help="how a grey model denoises a colour photo (colour_denoise): per_channel, chroma or luma_chroma (one more "
    "model per σ, trained at σ/√3 for the luma); auto: the best of the three on coffee, a training image, per σ",
)
@click.option("--seed", default=0, show_default=True, help="seed of training and of the test noise")
@click.option("--device", default="auto", show_default=True)
@click.option("--tracking_uri", default="", help="MLflow store (default: a SQLite file in a temporary folder)")
@click.option(
    "--model_uris",
    default="",
    help="σ=URI,... : evaluate these models instead of training (the luma models under σ/√3, e.g. 14.4338)",
)
def main(**opts) -> None:
    import mlflow
    import torch

    from latent_models.kinds.denoiser.baselines import BM3D_MISSING, bm3d_installed
    from latent_models.serving.pyfunc import load_torch_model

    if not bm3d_installed():  # before hours of training, not after
        raise click.ClickException(BM3D_MISSING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    command = " ".join(["python benchmarks/photos_per_sigma.py", shlex.join(sys.argv[1:])]).strip()
    load_before = os.getloadavg()
    started_all = time.perf_counter()
    out = Path(opts["out"]).resolve()
    photos = out / "photos"
    write_photos(photos)
    tmp = Path(tempfile.mkdtemp(prefix="latent-models-photos-"))
    os.chdir(tmp)
    mlflow.set_tracking_uri(
        opts["tracking_uri"] or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{tmp}/mlflow.db"
    )
    sigmas = [float(s) for s in opts["sigmas"].split(",")]
    given = dict(item.split("=", 1) for item in opts["model_uris"].split(",") if item)
    clean = {name: load_image(name) for name in TEST_IMAGES}
    results, seconds, runs, schemes, figure = {}, {}, {}, {}, None

    def model_at(level: float):
        """The grey model trained at noise `level` (0-255 scale): given, or trained now."""
        if f"{level:g}" in given:
            uri = given[f"{level:g}"]
        else:
            t = time.perf_counter()
            run = train(level, photos, opts, tmp)
            seconds[f"σ={level:g} training (run_ae)"] = time.perf_counter() - t
            runs[level] = {k: run.get(k) for k in ("run_id", "model_uri", "val_psnr", "test_psnr")}
            print(f"σ={level:g}: {json.dumps(runs[level])}", flush=True)
            uri = run["model_uri"]
        return load_torch_model(uri, torch.device("cpu"))[0]

    for sigma in sigmas:
        t = time.perf_counter()
        factors = tune_nlm(sigma, opts["seed"])
        seconds[f"σ={sigma:g} NLM tuning"] = time.perf_counter() - t
        model = model_at(sigma)
        scheme, luma_model = "per_channel", None
        if model.config.channels == 1 and opts["colour"] != "per_channel":
            scheme = opts["colour"]
            if scheme in ("auto", "luma_chroma"):
                luma_model = model_at(luma_sigma(sigma))
            if scheme == "auto":
                on_coffee = pick_colour_scheme(sigma, opts["seed"], model, luma_model)
                scheme = max(on_coffee, key=on_coffee.get)
                print(f"σ={sigma:g} colour scheme on coffee: {json.dumps(on_coffee)} -> {scheme}", flush=True)
        schemes[sigma] = scheme
        results[sigma] = {}
        timing = {"nlm": 0.0, "bm3d": 0.0, "model": 0.0, "model_x8": 0.0}
        for name, x in clean.items():
            noisy = add_noise(x, sigma, image_seed(opts["seed"], name, sigma))
            kind = "colour" if x.ndim == 3 else "grey"
            outputs = {"noisy": noisy}
            t = time.perf_counter()
            outputs["nlm"] = nlm(noisy, sigma, factors[kind])
            timing["nlm"] += time.perf_counter() - t
            t = time.perf_counter()
            cache = out / "cache" / f"bm3d-{name}-sigma{sigma:g}-seed{opts['seed']}.npy"
            outputs["bm3d"] = bm3d_denoise(noisy, sigma, cache)
            timing["bm3d"] += time.perf_counter() - t
            for method, self_ensemble in (("model", False), ("model_x8", True)):
                t = time.perf_counter()
                if kind == "colour":
                    outputs[method] = colour_denoise(scheme, model, luma_model, noisy, self_ensemble)
                else:
                    outputs[method] = model_denoise(model, noisy, self_ensemble)
                timing[method] += time.perf_counter() - t
            row = {m: psnr(x, outputs[m]) for m in METHODS}
            results[sigma][name] = {**row, "kind": kind, "nlm_factor": factors[kind]}
            print(f"σ={sigma:g} {name}: " + ", ".join(f"{m} {v:.2f}" for m, v in row.items()), flush=True)
            if name == FIGURE_IMAGE and sigma == FIGURE_SIGMA:
                figure = (x, outputs, row)
        for method, value in timing.items():
            seconds[f"σ={sigma:g} {method} on the test images"] = value
    if figure is not None:
        _figure(out / "photos_benchmark.png", *figure, FIGURE_SIGMA, FIGURE_IMAGE)
    seconds["total"] = time.perf_counter() - started_all
    (out / "results.json").write_text(
        json.dumps(
            {
                "command": command,
                "results": {f"{s:g}": r for s, r in results.items()},
                "runs": {f"{s:g}": r for s, r in runs.items()},
                "colour_schemes": {f"{s:g}": r for s, r in schemes.items()},
                "seconds": seconds,
            },
            indent=2,
        )
    )
    print(f"\n```bash\n{command}\n```\n")
    print("Mean PSNR (dB) over the held-out images " + ", ".join(TEST_IMAGES) + ":\n")
    print(_mean_table(results) + "\n")
    print(_image_table(results) + "\n")
    if schemes:
        print("Colour photos through grey models: " + ", ".join(f"σ={s:g} {c}" for s, c in schemes.items()))
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
