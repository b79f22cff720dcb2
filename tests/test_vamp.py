"""The VampPrior VAE (`kinds/vamp`): its learned prior, its -ELBO and IW-NLL measured with the
VAE's scores, and the kind end to end on the fixture (train, log, serve every mode, evaluate)."""

import dataclasses
import math
import typing

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from latent_models import cli
from latent_models.config import EvaluateConfig
from latent_models.errors import ConfigError
from latent_models.evaluation.evaluate import run_evaluate
from latent_models.evaluation.metrics import log_normal
from latent_models.kinds import kind
from latent_models.kinds.vae.config import VAEConfig
from latent_models.kinds.vae.scores import evaluate_vae, iw_nll_per_image
from latent_models.kinds.vamp.config import VampConfig, VampModelConfig
from latent_models.kinds.vamp.model import VampVAE
from latent_models.serving.inputs import InvalidInput
from tests.conftest import FIXTURE_DATA, TINY, TINY_DATA, TINY_RUNS, cli_options

SMALL = VampModelConfig(latent_dim=4, width=8, pseudo_inputs=7)
# The entry point's tiny run: the shared tiny settings, a handful of pseudo-inputs, a small IW-NLL.
RUN = dict(TINY, limit_test=100, pseudo_inputs=TINY_RUNS["vamp"]["pseudo_inputs"], iw_samples=5, iw_images=40)


def test_the_prior_is_the_equal_mixture_of_the_posteriors_at_the_pseudo_inputs():
    torch.manual_seed(0)
    model = VampVAE(SMALL).eval()
    with torch.no_grad():
        mu, logvar = model.encode(model.pseudo_inputs())
        mixture = MixtureSameFamily(
            Categorical(logits=torch.zeros(7)), Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
        )
        z = torch.randn(3, 5, 4)
        assert torch.allclose(model.log_prior(z), mixture.log_prob(z), atol=1e-4)
        assert model.log_prior(z).shape == (3, 5)


def test_the_kl_is_log_q_minus_log_p_at_the_decoded_z():
    torch.manual_seed(0)
    model = VampVAE(SMALL).eval()
    x, eps = torch.rand(3, 1, 28, 28), torch.randn(3, 4)
    with torch.no_grad():
        ll, kl, mu, logvar = model(x, eps=eps)
        z = mu + eps * torch.exp(0.5 * logvar)
        assert torch.allclose(kl, log_normal(z, mu, logvar) - model.log_prior(z), atol=1e-4)
        assert torch.allclose(ll, model.log_likelihood(model.decode_logits(z), x))


def test_no_pseudo_inputs_is_the_standard_normal_prior():
    model = VampVAE(VampModelConfig(latent_dim=4, width=8, pseudo_inputs=0)).eval()
    z = torch.randn(6, 4)
    assert torch.allclose(model.log_prior(z), log_normal(z, torch.zeros(4), torch.zeros(4)), atol=1e-5)
    a = model.sample_latents(5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, torch.randn(5, 4, generator=torch.Generator().manual_seed(1)))


def test_samples_come_from_the_prior_and_the_cached_prior_follows_the_weights():
    torch.manual_seed(0)
    model = VampVAE(SMALL)
    with torch.no_grad():
        before = model.prior_components()[0].clone()
        samples = model.sample(5, generator=torch.Generator().manual_seed(0))
        assert samples.shape == (5, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1
        assert torch.equal(samples, model.sample(5, generator=torch.Generator().manual_seed(0)))
        # A draw at temperature ~0 is a pseudo-input's posterior mean.
        z = model.sample_latents(50, temperature=1e-6, generator=torch.Generator().manual_seed(0))
        assert (torch.cdist(z, before).min(dim=1).values < 1e-4).all()
    # The training loop's optimizer: a fused AdamW step leaves the tensors' version counters as they were.
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, fused=True)
    ll, kl, _, _ = model(torch.rand(4, 1, 28, 28))
    (kl - ll).mean().backward()
    opt.step()
    with torch.inference_mode():
        after = model.prior_components()[0]
        assert not torch.allclose(before, after)
        assert torch.allclose(after, model.encode(model.pseudo_inputs())[0])
    model.load_state_dict(VampVAE(SMALL).state_dict())
    with torch.no_grad():
        assert torch.allclose(model.prior_components()[0], model.encode(model.pseudo_inputs())[0])


def test_the_iw_nll_uses_the_learned_prior_and_is_below_the_elbo(fixture_data):
    from latent_models.data import binarized, load_splits

    torch.manual_seed(0)
    model = VampVAE(SMALL).eval()
    x = binarized(load_splits("mnist", str(fixture_data), val_size=100, download=False).test.images[:6], 0)
    k = 20
    with torch.no_grad():
        mu, logvar = model.encode(x)
        generator = torch.Generator().manual_seed(3)
        eps = torch.randn((k, 6, 4), generator=generator)
        z = mu + eps * torch.exp(0.5 * logvar)
        log_px = model.log_likelihood(model.decode_logits(z.reshape(-1, 4)), x.repeat(k, 1, 1, 1)).view(k, 6)
        log_w = log_px + model.log_prior(z) - log_normal(z, mu, logvar)
        expected = -(torch.logsumexp(log_w, 0) - math.log(k))
    got = iw_nll_per_image(model, x, k, torch.Generator().manual_seed(3))
    assert torch.allclose(got, expected, atol=1e-3)
    elbo = evaluate_vae(model, x, 0)["neg_elbo"]
    assert got.mean().item() < elbo + 1.0  # a tighter bound (up to the one-sample noise of the ELBO)


def test_the_entry_points_config_makes_the_model_config():
    cfg = VampConfig()
    assert cfg.model_config((1, 28, 28)) == VampModelConfig()
    assert cfg.binarize and cfg.iw_samples == 1000 and cfg.iw_images == 2000  # the benchmark's measure
    assert kind("vamp").config is VampConfig and kind("vamp").evaluate_options is kind("vae").evaluate_options


def test_the_params_it_shares_with_the_vae_are_the_vaes_at_its_own_defaults():
    """Declared once (type, help, checks) in the VAE's config; the VampPrior VAE sets only defaults."""
    vae, vamp = ({f.name: f for f in dataclasses.fields(c)} for c in (VAEConfig, VampConfig))
    vae_types, vamp_types = typing.get_type_hints(VAEConfig), typing.get_type_hints(VampConfig)
    shared = ("latent_dim", "width", "likelihood", "beta", "kl_warmup_epochs", "binarize", "iw_samples", "iw_images")
    assert all(vamp_types[n] == vae_types[n] and vamp[n].metadata == vae[n].metadata for n in shared)
    own = {n: vamp[n].default for n in shared if vamp[n].default != vae[n].default}
    assert own == {"latent_dim": 32, "binarize": True, "iw_samples": 1000, "iw_images": 2000}
    with pytest.raises(ConfigError, match="latent_dim must be > 0"):
        VampModelConfig(latent_dim=0)


def test_pseudo_inputs_must_not_be_negative():
    result = CliRunner().invoke(cli.command("vamp"), [*cli_options(TINY_DATA), "--pseudo_inputs", "-1"])
    assert result.exit_code != 0 and "pseudo_inputs must be >= 0" in result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny `vamp` run through the CLI, tracked in its own store."""
    from tests.conftest import tracking_at

    monkeypatch = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("vamp")
    monkeypatch.chdir(folder)
    with tracking_at(f"sqlite:///{folder / 'mlflow.db'}", monkeypatch):
        result = CliRunner().invoke(cli.command("vamp"), cli_options({**RUN, "system_metrics": False}))
        assert result.exit_code == 0, result.output
        yield mlflow.search_runs(experiment_names=["latent-models-vamp"], output_format="list")[0]
    monkeypatch.undo()


def test_a_tiny_run_logs_the_vaes_metrics_and_figures(trained):
    metrics, tags = trained.data.metrics, trained.data.tags
    assert tags["model_type"] == "vamp"
    for name in ("val_neg_elbo", "test_neg_elbo", "test_iw_nll", "test_iw_nll_bits_per_dim", "test_kl"):
        assert math.isfinite(metrics[name]), name
    assert metrics["test_iw_nll"] < metrics["test_neg_elbo"] + 1.0
    figures = {f.path for f in mlflow.MlflowClient().list_artifacts(trained.info.run_id, "figures")}
    assert {"figures/samples.png", "figures/reconstructions.png", "figures/loss_curves.png"} <= figures
    assert "figures/samples_fitted_prior.png" not in figures  # its samples come from its own prior


def test_the_served_model_samples_from_its_prior_decodes_reconstructs_and_scores(trained):
    version = mlflow.MlflowClient().search_model_versions("name='latent-vamp'")[0]
    uri = f"models:/latent-vamp/{version.version}"
    loaded = mlflow.pyfunc.load_model(uri)
    inputs = mlflow.models.get_model_info(uri).metadata["inputs"]
    assert "learned VampPrior" in inputs["samplers"] and "score" in inputs and "decode" in inputs
    served = loaded.unwrap_python_model()
    model = served.model
    x = np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)

    assert loaded.predict(x).shape == (3, 28, 28)  # reconstruct, the default
    rows = pd.DataFrame([{"n": 2, "seed": 1}, {"n": 3, "seed": 5, "temperature": 0.5}])
    a = loaded.predict(rows, params={"mode": "sample"})
    assert a.shape == (5, 28, 28) and np.array_equal(a, loaded.predict(rows, params={"mode": "sample"}))
    with torch.inference_mode():
        expected = model.sample(2, generator=torch.Generator().manual_seed(1))[:, 0].numpy()
    assert np.allclose(a[:2], expected, atol=1e-6)  # the learned prior's draws, as the model's own sample
    with pytest.raises(InvalidInput, match="sampler must be one of prior"):
        served.predict(None, rows, {"mode": "sample", "sampler": "normal"})

    z = torch.randn(2, model.latent_dim)
    with torch.inference_mode():
        decoded = model.decode(z)[:, 0].numpy()
    assert np.allclose(served.predict(None, z.numpy(), {"mode": "decode"}), decoded, atol=1e-6)

    scores = loaded.predict(x, params={"mode": "score", "k": 5, "seed": 0})
    expected = iw_nll_per_image(model, torch.from_numpy(x)[:, None], 5, torch.Generator().manual_seed(0))
    assert list(scores.columns) == ["nll_nats", "bits_per_dim"]
    assert np.allclose(scores["nll_nats"], expected.double().numpy(), rtol=1e-5)


def test_evaluate_measures_the_samples_of_its_own_prior(trained):
    cfg = EvaluateConfig(
        data_dir=str(FIXTURE_DATA),
        download=False,
        limit_test=100,
        model_uri="models:/latent-vamp/1",
        iw_samples=5,
        iw_images=40,
        samples=300,
        classifier_epochs=1,
        ood_images=60,
    )
    result = run_evaluate(cfg)
    rows = {r["sampler"]: r for r in result["table"]}
    assert set(rows) == {"prior"}
    assert result["fid_prior"] == pytest.approx(rows["prior"]["fid"]) and result["fid_prior"] > 0
    assert 0 <= result["class_entropy_prior"] <= math.log(10) + 1e-6
    assert "fid_normal" not in result and "fid_ratio_normal_to_fitted" not in result
    assert 0 <= result["ood_auroc_nll"] <= 1
