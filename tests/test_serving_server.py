"""The real `mlflow models serve -m models:/<name>@champion` against tiny trained models.

One module-scoped store holds a denoiser and a VAE, each trained on the fixture: the denoiser
made `champion` by the training pipeline itself, the (too briefly trained) VAE by hand; one
server per model is started
on a free loopback port, waited on via /ping, and stopped by its process id.
"""

import base64
import io
import json
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from latent_models.data import load_splits
from latent_models.kinds.denoiser.config import AEConfig
from latent_models.kinds.denoiser.recipe import run_ae
from latent_models.kinds.vae.config import VAEConfig
from latent_models.kinds.vae.recipe import run_vae
from latent_models.kinds.vae.requests import MAX_TEMPERATURE
from latent_models.noise import fixed_noise
from latent_models.serving.inputs import MAX_BATCH
from latent_models.serving.png import decode_png, encode_png, images_to_png_frame, png_frame_to_images
from latent_models.tracking import CHAMPION, move_alias
from tests.conftest import FIXTURE_DATA, TINY, tracking_at
from tests.helpers.servers import ModelServer, mlflow_cli, model_server_env
from tests.test_photo_serving import _png_claiming as _png_holding
from tests.test_serving import _png_claiming

pytestmark = pytest.mark.e2e

DENOISER, VAE = "serve-denoiser", "serve-vae"
NOISE, LEVEL = "gaussian", 0.3
LATENT_DIM = 4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A private store with both tiny models registered, and its folder."""
    tmp = tmp_path_factory.mktemp("serve")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    common = dict(TINY, limit_test=100, experiment_name="serve")
    with pytest.MonkeyPatch.context() as mp, tracking_at(uri, mp):
        mp.chdir(tmp)
        # Gaussian 0.3 denoises well after a few short epochs (OneCycle warm-up is brief).
        ae = run_ae(
            AEConfig(
                **dict(
                    common,
                    epochs=4,
                    batch_size=20,
                    lr=5e-3,
                    noise=NOISE,
                    noise_level=LEVEL,
                    iterations=1,
                    registered_model_name=DENOISER,
                )
            )
        )
        vae = run_vae(VAEConfig(**common, latent_dim=LATENT_DIM, iw_samples=10, registered_model_name=VAE))
        # Two epochs on 500 digits leave the VAE worse than the mean image, so training keeps
        # it from champion; moved there by hand, as the promote entry point does.
        assert vae["promotion"].startswith("rejected")
        move_alias(VAE, vae["registered_version"], CHAMPION)
    assert ae["promotion"].startswith("champion")
    return uri, tmp


@pytest.fixture(scope="module")
def servers(trained):
    uri, tmp = trained
    started = {name: ModelServer(f"models:/{name}@champion", tmp / f"{name}.log", uri) for name in (DENOISER, VAE)}
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()
        assert all(s.proc.poll() is not None for s in started.values())


@pytest.fixture(scope="module")
def digits():
    """Fixture test digits (never seen in training) and their noisy versions."""
    clean = load_splits("mnist", str(FIXTURE_DATA), 100, 0, False).test.images[:64]
    noisy = fixed_noise(clean, NOISE, LEVEL, seed=123)
    return clean[:, 0].numpy(), noisy[:, 0].numpy()


def _psnr(x, y) -> float:
    mse = ((np.asarray(x, np.float64) - np.asarray(y, np.float64)) ** 2).reshape(len(x), -1).mean(1)
    return float((-10 * np.log10(np.maximum(mse, 1e-10))).mean())


def _predictions(response: requests.Response):
    assert response.status_code == 200, response.text[-2000:]
    return response.json()["predictions"]


def _png(array: np.ndarray, mode: str) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _split(items) -> dict:
    return {"dataframe_split": {"columns": ["image"], "data": [[i] for i in items]}}


# --- denoising -------------------------------------------------------------------------


def test_denoising_raises_psnr_in_both_forms(servers, digits):
    clean, noisy = digits
    server = servers[DENOISER]
    denoised = np.asarray(_predictions(server.post({"inputs": noisy.tolist()})), np.float32)
    assert denoised.shape == noisy.shape and 0.0 <= denoised.min() and denoised.max() <= 1.0
    before, after = _psnr(noisy, clean), _psnr(denoised, clean)
    assert after > before + 3.0, (before, after)

    frame = images_to_png_frame(noisy)
    answer = _predictions(server.post({"dataframe_split": frame.to_dict(orient="split", index=False)}))
    assert len(answer) == len(noisy) and set(answer[0]) == {"image"}
    from_png = png_frame_to_images(answer)
    assert _psnr(from_png, clean) > before + 3.0
    assert np.abs(from_png - denoised).max() < 0.02  # 8-bit quantization of input and output only


@pytest.mark.parametrize("layout", [(-1, 784), (-1, 1, 28, 28)])
def test_answers_come_back_in_the_callers_layout(servers, digits, layout):
    _, noisy = digits
    body = {"instances": noisy[:3].reshape(layout).tolist()}
    out = np.asarray(_predictions(servers[DENOISER].post(body)))
    assert out.shape == noisy[:3].reshape(layout).shape


def test_mlflow_models_predict_takes_both_forms(trained, digits):
    uri, tmp = trained
    _, noisy = digits
    bodies = {
        "floats": {"inputs": noisy[:2].tolist()},
        # PNGs, more than the REST server's limit (a file takes any N); the first two are the floats'
        "many": {
            "dataframe_split": images_to_png_frame(np.resize(noisy, (MAX_BATCH + 76, 28, 28))).to_dict(
                orient="split", index=False
            )
        },
    }
    answers = {}
    for form, body in bodies.items():
        (tmp / f"{form}.json").write_text(json.dumps(body))
        cmd = [
            mlflow_cli(),
            "models",
            "predict",
            "-m",
            f"models:/{DENOISER}@champion",
            "-i",
            str(tmp / f"{form}.json"),
            "-o",
            str(tmp / f"{form}.out.json"),
            "-t",
            "json",
            "--env-manager",
            "local",
        ]
        proc = subprocess.run(cmd, env=model_server_env(uri), cwd=tmp, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        answers[form] = json.loads((tmp / f"{form}.out.json").read_text())["predictions"]
    floats = np.asarray(answers["floats"], np.float32)
    assert floats.shape == (2, 28, 28)
    assert len(answers["many"]) == MAX_BATCH + 76
    assert np.abs(png_frame_to_images(answers["many"][:2]) - floats).max() < 0.02


def test_photo_sized_pngs_come_back_in_their_own_sizes(servers):
    """A U-Net served from MNIST training takes PNGs of any size, each its own, with the self-ensemble."""
    pixels = np.random.default_rng(0).integers(0, 256, (75, 100), dtype=np.uint8)
    for params in (None, {"ensemble": 8}):
        answer = _predictions(servers[DENOISER].post(_split([encode_png(pixels), ZERO_PNG]), params))
        assert decode_png(answer[0]["image"], 0, (1, 75, 100)).shape == (75, 100)
        assert decode_png(answer[1]["image"], 1, (1, 28, 28)).shape == (28, 28)


# --- the VAE ---------------------------------------------------------------------------


def test_sampler_returns_n_images_deterministic_under_a_seed(servers):
    server = servers[VAE]

    def sample(rows):
        return np.asarray(_predictions(server.post({"dataframe_records": rows}, {"mode": "sample"})))

    a, b, c = sample([{"n": 5, "seed": 7}]), sample([{"n": 5, "seed": 7}]), sample([{"n": 5, "seed": 8}])
    assert a.shape == (5, 28, 28) and 0.0 <= a.min() and a.max() <= 1.0
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    rows = sample([{"n": 2, "seed": 7, "temperature": 0.5}, {"n": 3, "seed": 8}])  # n per row, in row order
    assert rows.shape == (5, 28, 28)
    assert np.array_equal(rows[:2], sample([{"n": 2, "seed": 7, "temperature": 0.5}]))
    assert np.array_equal(rows[2:], sample([{"n": 3, "seed": 8}]))


def test_decode_and_reconstruct(servers, digits):
    clean, _ = digits
    server = servers[VAE]
    z = np.random.default_rng(0).standard_normal((3, LATENT_DIM)).tolist()
    decoded = np.asarray(_predictions(server.post({"inputs": z}, {"mode": "decode"})))
    assert decoded.shape == (3, 28, 28) and 0.0 <= decoded.min() and decoded.max() <= 1.0
    recon = np.asarray(_predictions(server.post({"inputs": clean[:4].tolist()}, {"mode": "reconstruct"})))
    assert recon.shape == (4, 28, 28)
    pngs = _predictions(server.post(_split(images_to_png_frame(clean[:4])["image"]), {"mode": "reconstruct"}))
    assert np.abs(png_frame_to_images(pngs) - recon).max() < 0.02


def test_score_answers_a_row_per_image_in_both_forms(servers, digits):
    clean, _ = digits
    server = servers[VAE]
    params = {"mode": "score", "k": 20, "seed": 0}
    floats = _predictions(server.post({"inputs": clean[:5].tolist()}, params))
    pngs = _predictions(server.post(_split(images_to_png_frame(clean[:5])["image"]), params))
    assert len(floats) == 5 and set(floats[0]) == {"nll_nats", "bits_per_dim"}
    # PNGs carry the 8-bit pixels the fixture's floats came from: the same scores.
    assert np.allclose([r["nll_nats"] for r in pngs], [r["nll_nats"] for r in floats], rtol=1e-5)
    assert all(r["bits_per_dim"] == pytest.approx(r["nll_nats"] / (784 * np.log(2))) for r in floats)
    assert floats == _predictions(server.post({"inputs": clean[:5].tolist()}, params))  # seeded


# --- bad requests: 4xx, a message naming the problem, and the server keeps serving ------

ZERO_PNG = encode_png(np.zeros((28, 28), np.uint8))

DENOISER_BAD = {
    "7x7": (
        {"inputs": np.zeros((2, 7, 7)).tolist()},
        None,
        "images are 7x7, smaller than this model takes: at least 8x8",
    ),
    "3 channels": ({"inputs": np.zeros((1, 3, 28, 28)).tolist()}, None, "expected (N, H, W), (N, 1, H, W) of any size"),
    "NaN pixel": (json.dumps({"inputs": [[float("nan")] + [0.5] * 783]}), None, "NaN or infinite"),
    "inf pixel": (json.dumps({"inputs": [[float("inf")] + [0.5] * 783]}), None, "NaN or infinite"),
    "above 1": ({"inputs": [[255.0] * 784]}, None, "must lie in [0, 1]; got min 255, max 255"),
    "below 0": ({"inputs": [[-0.5] * 784]}, None, "must lie in [0, 1]; got min -0.5"),
    "strings": ({"inputs": [["white"] * 784]}, None, "images must be numbers"),
    "bad base64": (_split(["this is not base64!"]), None, "image 0: not valid base64"),
    "object as a column name": (
        {"dataframe_split": {"columns": [{}], "data": [None]}},
        None,
        "dataframe_split columns must be names (strings or numbers); found an object",
    ),
    "not a PNG": (
        _split([base64.b64encode(b"\xff\xd8\xff\xe0 JFIF").decode()]),
        None,
        "image 0: not a PNG (looks like JPEG)",
    ),
    "RGB PNG": (
        _split([ZERO_PNG, _png(np.zeros((28, 28, 3), np.uint8), "RGB")]),
        None,
        "image 1: PNG is RGB (3 channels); expected 8-bit grayscale",
    ),
    "7x7 PNG": (
        _split([_png(np.zeros((7, 7), np.uint8), "L")]),
        None,
        "image 0: PNG is 7x7, smaller than this model takes: at least 8x8",
    ),
    "PNG data past its size": (
        _split([_png_holding(10, 10, rows=100, cols=100)]),
        None,
        "image 0: PNG data holds more than its declared 10x10",
    ),
    "PNG data short of its size": (
        _split([_png_holding(100, 100, rows=10, cols=10)]),
        None,
        "image 0: PNG data does not fill its declared 100x100",
    ),
    "ensemble 3": ({"inputs": [[0.5] * 784]}, {"ensemble": 3}, "ensemble must be 1 (one pass) or 8"),
    "empty floats": ({"inputs": []}, None, "empty batch"),
    "empty PNGs": (_split([]), None, "empty batch"),
    "too many PNGs": (_split([ZERO_PNG] * (MAX_BATCH + 1)), None, f"batch of {MAX_BATCH + 1} images is over the limit"),
    "too many floats": ({"inputs": np.zeros((MAX_BATCH + 1, 784), int).tolist()}, None, "over the limit of"),
    "ragged": ({"inputs": [[0.5] * 784, [0.5] * 783]}, None, "inhomogeneous"),
    "clip param type": ({"inputs": [[0.5] * 784]}, {"clip": "perhaps"}, "clip"),
    # issue 14: a hostile client's findings
    "booleans": ({"inputs": [[True] * 784]}, None, "images must be numbers; got booleans"),
    "boolean PNG": (_split([True]), None, "image 0: expected a base64 PNG string, got bool"),
    "unknown param": (
        {"inputs": [[0.5] * 784]},
        {"clip": False, "bogus": 1},
        "unknown params ['bogus']; this model takes clip, ensemble",
    ),
    "30000x30000 PNG header": (
        _split([_png_claiming(30000, 30000)]),
        None,
        "image 0: PNG is 30000x30000 (900000000 pixels), over this model's budget of 16000000 pixels per image",
    ),
    "8 MB string": ({"inputs": ["x" * 8_000_000]}, None, "images must be numbers; got strings"),
    "50 MB string": ({"inputs": ["x" * 50_000_000]}, None, "images must be numbers; got strings"),
    "8 MB PNG string": (
        _split([_png_holding(28, 28, rows=28, cols=28) + "A" * 8_000_000]),
        None,
        "characters is too long for a 28x28 PNG",
    ),
    "a bare number": ({"inputs": 0.5}, None, "got a single number, not a batch of images"),
    "nulls": ({"inputs": [[None] * 784]}, None, "images must be numbers; got null"),
    # refused before MLflow's np.array: it read `true` among numbers as 1.0 (a 200), and built
    # a 784 x 8 MB string array around one long string (the worker ran out of memory)
    "a boolean among numbers": (
        {"inputs": [[0.5] * 783 + [True]]},
        None,
        "inputs must hold numbers only; found a boolean (true) among the numbers",
    ),
    "8 MB string among numbers": (
        {"inputs": [[0.5] * 783 + ["x" * 8_000_000]]},
        None,
        "inputs must hold numbers only; found a string of 8000000 characters among the numbers",
    ),
}

# Hostile requests answered within a second even on a busy machine (an 8 MB string held the
# worker 10.7 s before they were refused ahead of conversion).
FAST = (
    "8 MB string",
    "8 MB PNG string",
    "booleans",
    "30000x30000 PNG header",
    "8 MB string among numbers",
    "PNG data past its size",
)

VAE_BAD = {
    "n too big": (
        {"dataframe_records": [{"n": MAX_BATCH + 1}]},
        {"mode": "sample"},
        f"n must be between 1 and {MAX_BATCH}; got {MAX_BATCH + 1}",
    ),
    "n zero": ({"dataframe_records": [{"n": 0, "seed": 1}]}, {"mode": "sample"}, "n must be between 1 and"),
    "n negative": ({"dataframe_records": [{"n": -3}]}, {"mode": "sample"}, "got -3"),
    "n fractional": ({"dataframe_records": [{"n": 2.5}]}, {"mode": "sample"}, "n must be a whole number"),
    "n text": ({"dataframe_records": [{"n": "many"}]}, {"mode": "sample"}, "n must be a number; got 'many'"),
    "rows over the limit": ({"dataframe_records": [{"n": 1000}, {"n": 100}]}, {"mode": "sample"}, "1100 images in all"),
    "temperature": ({"dataframe_records": [{"n": 2, "temperature": 0}]}, {"mode": "sample"}, "temperature must be > 0"),
    "typo field": ({"dataframe_records": [{"n": 2, "sed": 1}]}, {"mode": "sample"}, "unknown fields ['sed']"),
    "no mode": ({"dataframe_records": [{"n": 2}]}, None, 'pass params {"mode": "sample"}'),
    "unknown mode": ({"inputs": [[0.5] * 784]}, {"mode": "dream"}, "mode must be one of reconstruct, sample, decode"),
    "latent size": ({"inputs": [[0.0] * (LATENT_DIM + 1)]}, {"mode": "decode"}, f"expected (N, {LATENT_DIM})"),
    "latent NaN": (
        json.dumps({"inputs": [[float("nan")] * LATENT_DIM], "params": {"mode": "decode"}}),
        None,
        "latents contain NaN",
    ),
    "reconstruct 27x27": ({"inputs": np.zeros((1, 27, 27)).tolist()}, {"mode": "reconstruct"}, "shape (1, 27, 27)"),
    # issue 14
    "temperature 1e38 (row)": (
        {"dataframe_records": [{"n": 2, "temperature": 1e38}]},
        {"mode": "sample"},
        f"temperature must be > 0 and at most {MAX_TEMPERATURE:g}; got 1e+38",
    ),
    "temperature 1e38 (param)": (
        {"inputs": [[0.5] * 784]},
        {"mode": "sample", "n": 2, "temperature": 1e38},
        f"at most {MAX_TEMPERATURE:g}",
    ),
    "typo param": (
        {"dataframe_records": [{"n": 2}]},
        {"mode": "sample", "temprature": 0.5},
        "unknown params ['temprature']; this model takes mode, clip, n, seed, temperature, sampler",
    ),
    "latents past float32": ({"inputs": [[3e38] * LATENT_DIM]}, {"mode": "decode"}, "not finite"),
    "score k 0": ({"inputs": [[0.5] * 784]}, {"mode": "score", "k": 0}, "k must be between 1 and 1000; got 0"),
    "score k 1001": ({"inputs": [[0.5] * 784]}, {"mode": "score", "k": 1001}, "k must be between 1 and 1000; got 1001"),
    "boolean latents": (
        {"inputs": [[True] * LATENT_DIM]},
        {"mode": "decode"},
        "latent vectors must be numbers; got booleans",
    ),
}


def _assert_clean(response: requests.Response, tmp: Path | None = None) -> None:
    """No stack trace and no server path in an error answer."""
    body = response.text
    assert "Traceback" not in body and "stack_trace" not in body, body[-800:]
    assert "site-packages" not in body and '.py"' not in body and 'File "' not in body, body[-800:]
    if tmp is not None:
        assert str(tmp) not in body


def _check_rejected(server, body, params, message, good_body, fast: bool = False):
    start = time.perf_counter()
    response = server.post(body, raw=True) if isinstance(body, str) else server.post(body, params)
    elapsed = time.perf_counter() - start
    assert 400 <= response.status_code < 500, (response.status_code, response.text[-500:])
    text = response.json()["message"]
    assert message in text, text[-800:]
    _assert_clean(response)
    assert len(response.content) < 10_000  # the echoed request is cut, never megabytes
    assert response.status_code == 400
    if fast:
        assert elapsed < 1.0, elapsed
    _predictions(server.post(good_body))  # and the server still answers


@pytest.mark.parametrize("case", DENOISER_BAD)
def test_denoiser_rejects_bad_input_and_keeps_serving(servers, case):
    body, params, message = DENOISER_BAD[case]
    _check_rejected(servers[DENOISER], body, params, message, {"inputs": [[0.5] * 784]}, fast=case in FAST)


@pytest.mark.parametrize("case", VAE_BAD)
def test_vae_rejects_bad_input_and_keeps_serving(servers, case):
    body, params, message = VAE_BAD[case]
    good = {"dataframe_records": [{"n": 1, "seed": 0}], "params": {"mode": "sample"}}
    _check_rejected(servers[VAE], body, params, message, good)


def test_a_hostile_request_does_not_hold_up_another(servers):
    """A 1-image request sent while an 8 MB string is being refused is answered within a second."""
    server = servers[DENOISER]
    hostile = json.dumps({"inputs": ["x" * 8_000_000]})
    done = {}
    thread = threading.Thread(target=lambda: done.setdefault("hostile", server.post(hostile, raw=True)))
    thread.start()
    time.sleep(0.05)
    start = time.perf_counter()
    _predictions(server.post({"inputs": [[0.5] * 784]}))
    assert time.perf_counter() - start < 1.0
    thread.join(30)
    assert done["hostile"].status_code == 400


# MLflow's scoring server answers these itself, before `predict` runs, with a 500 whose body
# is only "Internal Server Error" (no stack trace, no path); no MLflow setting changes it
# (mlflow/mlflow#4897). A proxy in front turns them into 4xx (docs/serving.md, Bad requests). This
# pins the behaviour: when an MLflow upgrade answers 4xx, move them into the tables above.
UPSTREAM_500 = {
    "no Content-Type": (json.dumps({"inputs": [[0.5] * 784]}), {}),
    "JSON nested 1000 deep": ("[" * 1000 + "]" * 1000, {"Content-Type": "application/json"}),
    "JSON nested 100000 deep": (
        '{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}",
        {"Content-Type": "application/json"},
    ),
}


@pytest.mark.parametrize("case", UPSTREAM_500)
def test_mlflows_own_500s_carry_no_stack_trace(servers, case):
    body, headers = UPSTREAM_500[case]
    response = servers[DENOISER].post(body, raw=True, headers=headers)
    assert response.status_code in (500, 400, 415), response.text[-300:]  # 4xx once MLflow fixes it
    _assert_clean(response)
    _predictions(servers[DENOISER].post({"inputs": [[0.5] * 784]}))


# --- fuzz: no 5xx, no answer slower than a second, no NaN in an answer ---------------------


def _fuzz_strategy():
    from hypothesis import strategies as st

    leaf = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**40), 2**40),
        st.text(max_size=12),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([0.0, 0.5, 1.0, 1e38, -1e38]),
    )
    value = st.recursive(
        leaf,
        lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
        max_leaves=25,
    )
    pixel = st.one_of(st.floats(-0.5, 1.5), st.booleans(), st.sampled_from([0.0, 1.0, 1e38]))
    images = st.lists(st.lists(pixel, min_size=784, max_size=784), min_size=1, max_size=3)
    rows = st.lists(
        st.fixed_dictionaries(
            {"n": st.one_of(st.integers(-3, 1100), leaf)},
            optional={
                "seed": st.one_of(st.integers(-3, 2**64), leaf),
                "temperature": st.one_of(st.floats(-1, 1e39), leaf),
            },
        ),
        max_size=3,
    )
    data = st.one_of(
        st.fixed_dictionaries({"inputs": st.one_of(images, value)}),
        st.fixed_dictionaries({"instances": st.one_of(images, value)}),
        st.fixed_dictionaries({"dataframe_records": st.one_of(rows, value)}),
        st.fixed_dictionaries(
            {"dataframe_split": st.one_of(st.fixed_dictionaries({"columns": value, "data": value}), value)}
        ),
        st.dictionaries(st.text(max_size=10), value, max_size=2),
    )
    params = st.dictionaries(
        st.sampled_from(["mode", "clip", "n", "seed", "temperature", "sampler", "colour"]),
        st.one_of(leaf, st.sampled_from(["sample", "decode", "reconstruct", "normal", "fitted"])),
        max_size=4,
    )
    return st.tuples(data, st.one_of(st.none(), params))


@pytest.mark.parametrize("name", [DENOISER, VAE])
def test_fuzzed_requests_get_no_5xx_and_answer_within_a_second(servers, name):
    from hypothesis import HealthCheck, given, settings

    server = servers[name]

    @settings(max_examples=150, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(_fuzz_strategy())
    def check(case):
        data, params = case
        body = json.dumps(data if params is None else {**data, "params": params})
        start = time.perf_counter()
        response = server.post(body, raw=True)
        elapsed = time.perf_counter() - start
        assert response.status_code < 500, (response.status_code, body[:300], response.text[-500:])
        assert elapsed < 1.0, (elapsed, body[:300])
        if response.status_code == 200:
            assert "NaN" not in response.text and "Infinity" not in response.text, body[:300]
        else:
            _assert_clean(response)

    check()
