import mlflow
import numpy as np
import pytest
import torch

from latent_models.models import ConvVAE, build_denoiser
from latent_models.serving import InvalidInput, MAX_BATCH, from_model_output, log_denoiser, log_vae, to_model_input


@pytest.mark.parametrize("shape", [(3, 28, 28), (3, 1, 28, 28), (3, 784)])
def test_accepted_layouts_round_trip(shape):
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    tensor, layout = to_model_input(x)
    assert tensor.shape == (3, 1, 28, 28)
    back = from_model_output(tensor, layout)
    assert back.shape == shape and np.array_equal(back, x)


@pytest.mark.parametrize(
    "value,message",
    [
        (np.zeros((2, 27, 27)), "shape (2, 27, 27)"),
        (np.zeros((2, 3, 28, 28)), "expected (N, 28, 28)"),
        (np.full((1, 28, 28), np.nan), "NaN or infinite"),
        (np.full((1, 28, 28), 2.0), "must lie in [0, 1]; got min 2, max 2"),
        (np.zeros((0, 28, 28)), "empty batch"),
        (np.zeros((MAX_BATCH + 1, 28, 28)), f"over the limit of {MAX_BATCH}"),
        ([["a"] * 784], "must be numbers"),
    ],
)
def test_bad_inputs_name_the_problem(value, message):
    with pytest.raises(InvalidInput) as err:
        to_model_input(value)
    assert message in err.value.message
    assert err.value.get_http_status_code() == 400


def test_logged_denoiser_predicts_like_the_model(tracking):
    torch.manual_seed(0)
    model = build_denoiser("unet", 8, 8).eval()
    x = np.random.default_rng(0).random((4, 28, 28), dtype=np.float32)
    with mlflow.start_run():
        info = log_denoiser(model, "unet", 8, 8, x[:2], registered_model_name="t-denoiser")
    loaded = mlflow.pyfunc.load_model("models:/t-denoiser/1")
    with torch.inference_mode():
        expected = model(torch.from_numpy(x).unsqueeze(1))[:, 0].numpy()
    assert np.allclose(loaded.predict(x), expected, atol=1e-6)
    sig = info.signature.inputs.to_dict()[0]
    assert sig["type"] == "tensor" and sig["tensor-spec"]["dtype"] == "float32"
    assert list(sig["tensor-spec"]["shape"]) == [-1, 28, 28]
    local = mlflow.artifacts.download_artifacts(info.model_uri)
    state = torch.load(f"{local}/artifacts/weights.pt", weights_only=True)  # no pickled classes
    assert set(state) == set(model.state_dict())


def test_logged_vae_modes(tracking):
    torch.manual_seed(0)
    model = ConvVAE(latent_dim=4, width=8).eval()
    x = np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)
    with mlflow.start_run():
        info = log_vae(model, 8, x[:2])
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert loaded.predict(x).shape == (3, 28, 28)
    a = loaded.predict(x[:1], params={"mode": "sample", "n": 6, "seed": 1})
    b = loaded.predict(x[:1], params={"mode": "sample", "n": 6, "seed": 1})
    c = loaded.predict(x[:1], params={"mode": "sample", "n": 6, "seed": 2})
    assert a.shape == (6, 28, 28) and np.array_equal(a, b) and not np.array_equal(a, c)
    with torch.inference_mode():
        z = torch.randn(2, 4)
        expected = model.decode(z)[:, 0].numpy()
    pyfunc_model = loaded.unwrap_python_model()
    assert np.allclose(pyfunc_model.predict(None, z.numpy(), {"mode": "decode"}), expected, atol=1e-6)
    with pytest.raises(InvalidInput, match="n must be between 1 and"):
        pyfunc_model.predict(None, x, {"mode": "sample", "n": 0})
    with pytest.raises(InvalidInput, match="mode must be one of"):
        pyfunc_model.predict(None, x, {"mode": "dream"})
    with pytest.raises(InvalidInput, match=r"expected \(N, 4\)"):
        pyfunc_model.predict(None, np.zeros((2, 5), np.float32), {"mode": "decode"})
