"""The user's own images end to end: a folder of grey and colour images of mixed sizes ->
train -> register -> load -> predict -> serve, for both models and each image_size policy."""

from __future__ import annotations

import base64
import io

import mlflow
import numpy as np
import pytest
from PIL import Image

from latent_models.kinds.denoiser.config import AEConfig
from latent_models.kinds.denoiser.recipe import run_ae
from latent_models.kinds.vae.config import VAEConfig
from latent_models.kinds.vae.recipe import run_vae
from latent_models.serving.png import images_to_png_frame, png_frame_to_images
from latent_models.tracking import CHAMPION, move_alias
from tests.conftest import tracking_at
from tests.helpers.servers import ModelServer
from tests.test_image_folder import write_images

pytestmark = pytest.mark.e2e

SIZE = 16
# (model, image_policy, channels, memory_budget_mb): each policy once per model; the VAE's
# patches run streams its training images from disk.
RUNS = {
    "ae-resize": ("ae", "resize", "auto", 0),
    "ae-center_crop": ("ae", "center_crop", "1", 0),
    "ae-patches": ("ae", "patches", "auto", 0),
    "vae-resize": ("vae", "resize", "auto", 0),
    "vae-center_crop": ("vae", "center_crop", "1", 0),
    "vae-patches": ("vae", "patches", "auto", 0.001),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Each run's result, in a private store; the folder holds 8 colour and 4 grey images."""
    tmp = tmp_path_factory.mktemp("own-images")
    folder = tmp / "photos"
    write_images(folder, 12, colour=8)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    results = {}
    with pytest.MonkeyPatch.context() as mp, tracking_at(uri, mp):
        mp.chdir(tmp)
        for name, (model, policy, channels, budget) in RUNS.items():
            common = dict(
                dataset="folder",
                data_dir=str(folder),
                image_size=SIZE,
                image_policy=policy,
                channels=channels,
                patches_per_image=4,
                memory_budget_mb=budget,
                val_fraction=0.2,
                test_fraction=0.2,
                epochs=1,
                batch_size=8,
                width=8,
                experiment_name="own-images",
                registered_model_name=name,
                system_metrics=False,
            )
            if model == "ae":
                results[name] = run_ae(AEConfig(**common, noise="gaussian", noise_level=0.2, iterations=1))
            else:
                results[name] = run_vae(VAEConfig(**common, latent_dim=4, iw_samples=4, prior_components=2))
            # One epoch need not beat doing nothing: champion by hand, as `promote` does.
            move_alias(name, results[name]["registered_version"], CHAMPION)
        yield uri, tmp, results


def _shape(name: str) -> tuple[int, int, int]:
    _, _, channels, _ = RUNS[name]
    return (1 if channels == "1" else 3, SIZE, SIZE)


def _images(shape: tuple[int, int, int], n: int = 3) -> np.ndarray:
    """(n, H, W) for grey, (n, 3, H, W) for colour: the layouts a caller sends."""
    x = np.random.default_rng(0).random((n, *shape), dtype=np.float32)
    return x[:, 0] if shape[0] == 1 else x


@pytest.mark.parametrize("name", RUNS)
def test_a_folder_trains_registers_loads_and_predicts(trained, name):
    uri, _, results = trained
    result, (kind, policy, _, budget) = results[name], RUNS[name]
    shape = _shape(name)
    run = mlflow.get_run(result["run_id"])
    assert run.data.tags["image_shape"] == "x".join(map(str, shape)) and run.data.tags["image_policy"] == policy
    assert run.data.tags["data_loading"] == (
        "streamed" if budget else "patches in memory" if policy == "patches" else "in-memory"
    )
    inputs = {d.dataset.name: d.dataset for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"photos-train", "photos-val", "photos-test"}
    assert all(d.digest.startswith(run.data.tags["dataset_digest"]) for d in inputs.values())

    model = mlflow.pyfunc.load_model(f"models:/{name}/{result['registered_version']}")
    x = _images(shape)
    params = {"mode": "reconstruct"} if kind == "vae" else None
    out = np.asarray(model.predict(x, params=params))
    assert out.shape == x.shape and 0.0 <= out.min() and out.max() <= 1.0
    frame = images_to_png_frame(x, shape)
    pngs = model.predict(frame, params=params)
    back = png_frame_to_images(pngs, shape)
    assert back.shape[0] == 3 and back.size == x.size
    if kind == "vae":
        samples = np.asarray(model.predict(None, params={"mode": "sample", "n": 2, "seed": 1}))
        assert samples.size == 2 * int(np.prod(shape))


def _png(array: np.ndarray, mode: str) -> str:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_served_colour_models_take_their_shape_and_refuse_others(trained):
    uri, tmp, _ = trained
    servers = {
        name: ModelServer(f"models:/{name}@champion", tmp / f"{name}.log", uri) for name in ("ae-patches", "vae-resize")
    }
    try:
        for server in servers.values():
            server.wait_ready()
        rgb = _png(np.full((SIZE, SIZE, 3), 128, np.uint8), "RGB")
        grey = _png(np.full((SIZE, SIZE), 128, np.uint8), "L")
        for name, server in servers.items():
            params = {"mode": "reconstruct"} if name.startswith("vae") else None
            ok = server.post({"dataframe_split": {"columns": ["image"], "data": [[rgb]]}}, params)
            assert ok.status_code == 200, ok.text[-2000:]
            (answer,) = png_frame_to_images(ok.json()["predictions"], (3, SIZE, SIZE))
            assert answer.shape == (SIZE, SIZE, 3)
            floats = server.post({"inputs": _images((3, SIZE, SIZE), 2).tolist()}, params)
            assert floats.status_code == 200 and np.asarray(floats.json()["predictions"]).shape == (2, 3, SIZE, SIZE)
            for body in (
                {"dataframe_split": {"columns": ["image"], "data": [[grey]]}},
                {"inputs": np.zeros((2, 28, 28)).tolist()},
            ):
                refused = server.post(body, params)
                assert refused.status_code == 400, refused.text[-2000:]
                message = refused.json()["message"]
                # The U-Net denoiser takes RGB images of any size; the VAE only its own shape.
                takes = "takes RGB images of any size" if name.startswith("ae") else f"3x{SIZE}x{SIZE}"
                assert takes in message and "Traceback" not in message, message
    finally:
        for server in servers.values():
            server.stop()


def test_evaluate_reuses_the_folder_split_and_shape_of_the_training_run(trained):
    from latent_models.config import EvaluateConfig
    from latent_models.evaluation.evaluate import run_evaluate

    uri, _, results = trained
    result = run_evaluate(
        EvaluateConfig(
            model_uri="models:/ae-patches/1",
            noise="gaussian",
            images=4,
            tune_images=4,
            baselines="median,nl_means",
            system_metrics=False,
            experiment_name="own-images-eval",
        )
    )
    run = mlflow.get_run(result["run_id"])
    assert run.data.tags["evaluated_dataset"] == "folder"
    assert run.data.params["image_size"] == str(SIZE) and run.data.params["channels"] == "3"
    assert run.data.params["image_policy"] == "patches"
    assert {"psnr_model", "psnr_nl_means", "psnr_median"} <= set(run.data.metrics)


@pytest.mark.parametrize("given", [{"image_size": 2 * SIZE}, {"channels": "1"}])
def test_evaluate_refuses_a_shape_other_than_the_folder_models_own(trained, given):
    """The model is evaluated at its own shape: a different image_size or channels is refused in
    one line, before any run starts, rather than silently ignored."""
    from latent_models.config import EvaluateConfig
    from latent_models.errors import ConfigError
    from latent_models.evaluation.evaluate import run_evaluate

    experiment = f"own-images-refused-{next(iter(given))}"
    with pytest.raises(ConfigError, match=f"this model takes 3x{SIZE}x{SIZE} images") as refused:
        run_evaluate(EvaluateConfig(model_uri="models:/ae-patches/1", experiment_name=experiment, **given))
    assert "\n" not in str(refused.value)
    assert mlflow.get_experiment_by_name(experiment) is None
