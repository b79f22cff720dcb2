"""User mistakes end in one clear line and a non-zero exit, never a traceback."""

import typing

import pytest
import torch
from click.testing import CliRunner

from latent_models import cli, options
from latent_models.config import MainConfig, SweepConfig
from latent_models.data import DATASETS, Dataset, load_splits
from latent_models.errors import ConfigError
from latent_models.kinds.denoiser.config import AEConfig
from latent_models.kinds.vae.config import VAEConfig
from latent_models.kinds.vae.prior import check_components, fit_gaussian_mixture
from latent_models.noise import NOISE_MODELS, add_noise, check_noise
from tests.conftest import FIXTURE_DATA, TINY_DATA, cli_options

AE, VAE = cli.command("ae"), cli.command("vae")


@pytest.mark.parametrize(
    "command,args,message",
    [
        (AE, ["--noise_level", "-0.2"], "noise_level must be >= 0, got -0.2"),
        (AE, ["--latent_dim", "0"], "latent_dim must be > 0, got 0"),
        (VAE, ["--latent_dim", "0"], "latent_dim must be > 0, got 0"),
        (
            VAE,
            ["--likelihood", "gaussian", "--binarize", "true"],
            "binarize=true needs likelihood=bernoulli",
        ),
        (cli.main, ["--ae_epochs", "0"], "ae_epochs must be > 0"),
        (VAE, ["--adam_beta2", "1"], "adam_beta2 must be in [0, 1), got 1.0"),
        (AE, ["--max_grad_norm", "-1"], "max_grad_norm must be >= 0 (0: off), got -1.0"),
        (AE, ["--nproc_per_node", "0"], "nproc_per_node must be > 0, got 0"),
        (
            VAE,
            ["--nproc_per_node", "3", "--batch_size", "128"],
            "batch_size (128) must be divisible by nproc_per_node (3)",
        ),
        (AE, ["--nproc_per_node", "2", "--resume", "last"], "resume runs in one process"),
    ],
)
def test_bad_params_give_one_clear_error(command, args, message, tracking):
    result = CliRunner().invoke(command, args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_data_is_a_clear_error(tmp_path, tracking):
    result = CliRunner().invoke(AE, ["--data_dir", str(tmp_path / "nowhere"), "--download", "false"])
    assert result.exit_code == 1
    assert "train-images-idx3-ubyte" in result.output and "download is off" in result.output
    assert "Traceback" not in result.output


def test_integer_params_accept_mlflow_float_spelling(tracking):
    # `mlflow run -P epochs=2.0` passes the text through: integers must accept it.
    result = CliRunner().invoke(AE, ["--epochs", "2.5", "--data_dir", str(FIXTURE_DATA)])
    assert result.exit_code != 0 and "2.5 is not a whole number" in result.output


@pytest.mark.parametrize(
    "command,option,value,allowed",
    [
        (AE, "dataset", "cifar10", ("mnist", "fashion-mnist")),
        (AE, "noise", "speckle", NOISE_MODELS),
        (AE, "arch", "resnet", ("unet", "conv")),
        (VAE, "likelihood", "poisson", ("bernoulli", "gaussian")),
        (VAE, "schedule", "step", ("onecycle", "cosine")),
        (cli.main, "precision", "fp8", ("auto", "fp32", "bf16", "fp16")),
        (cli.evaluate, "dataset", "cifar10", ("", "mnist", "fashion-mnist")),
        (cli.sweep, "model", "gan", ("ae", "vae")),
        (cli.search, "sampler", "grid", ("tpe", "random")),
        (cli.search, "pruner", "hyperband", ("median", "none")),
    ],
)
def test_a_bad_choice_is_clicks_one_line_error_listing_the_options(command, option, value, allowed):
    result = CliRunner().invoke(command, [f"--{option}", value])
    assert result.exit_code == 2  # click's usage error: refused before any config is made
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and f"Invalid value for '--{option}'" in error[0], result.output
    assert f"{value!r} is not one of" in error[0]
    assert all(repr(choice) in error[0] for choice in allowed), error[0]
    assert "Traceback" not in result.output


def test_choices_are_their_literal_types():
    # the built-in dataset table has exactly the typed names, beside the user's own folder
    assert typing.get_args(Dataset) == (*DATASETS, "folder")
    assert options.choices(AEConfig)["noise"] == NOISE_MODELS
    assert options.choices(MainConfig) == {
        "dataset": (*DATASETS, "folder"),
        "channels": ("auto", "1", "3"),
        "image_policy": ("resize", "center_crop", "patches"),
        "precision": ("auto", "fp32", "bf16", "fp16"),
    }
    with pytest.raises(ConfigError, match="arch must be one of unet, conv; got 'resnet'"):
        AEConfig(arch="resnet")  # made in code, not on the command line: the same Literal refuses it


# --- validation runs once ----------------------------------------------------------------


@pytest.fixture
def validations(monkeypatch):
    """Count validate() calls per config class (each still validates)."""
    counts = {}
    for cls in (AEConfig, VAEConfig, MainConfig, SweepConfig):

        def spy(self, _validate=cls.validate, _name=cls.__name__):
            counts[_name] = counts.get(_name, 0) + 1
            _validate(self)

        monkeypatch.setattr(cls, "validate", spy)
    return counts


NO_DATA = ["--data_dir", "nowhere", "--download", "false"]  # fails in load_splits, after any validation


@pytest.mark.parametrize(
    "command,expected",
    [
        (AE, {"AEConfig": 1}),
        (VAE, {"VAEConfig": 1}),
        (cli.main, {"MainConfig": 1, "AEConfig": 1, "VAEConfig": 1}),
    ],
)
def test_an_entry_point_validates_each_config_once(command, expected, validations, tracking):
    result = CliRunner().invoke(command, NO_DATA)
    assert result.exit_code == 1 and "download is off" in result.output, result.output
    assert validations == expected


def test_a_sweep_validates_itself_once_and_each_child_once(validations, tracking):
    result = CliRunner().invoke(cli.sweep, ["--grid", "noise_level=0.1,0.2 colour=red"])
    assert result.exit_code == 1 and "colour" in result.output
    assert validations == {"SweepConfig": 1}
    from latent_models.tuning.sweep import child_configs

    validations.clear()
    assert len(child_configs(SweepConfig(grid="noise_level=0.1,0.2"))) == 2
    assert validations == {"SweepConfig": 1, "AEConfig": 2}


# --- each limit in one function, the same message from every caller ------------------------


def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as err:
        fn(*args, **kwargs)
    return str(err.value)


def _cli_error(command, args) -> str:
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    return result.output.strip().removeprefix("Error: ")


@pytest.mark.parametrize("noise,level", [("gaussian", -0.2), ("mask", 1.5), ("salt_pepper", 2.0)])
def test_noise_limits_are_noises_own(noise, level, tracking):
    message = _message(check_noise, noise, level)
    assert _cli_error(AE, ["--noise", noise, "--noise_level", str(level)]) == message
    assert _message(add_noise, torch.zeros(1, 1, 4, 4), noise, level) == message


def test_mixture_limits_are_the_priors_own(tracking):
    assert _cli_error(VAE, ["--prior_components", "-1"]) == _message(check_components, -1, name="prior_components")
    assert _cli_error(cli.evaluate, ["--components", "0"]) == _message(check_components, 0)
    assert _message(fit_gaussian_mixture, torch.randn(3, 2), 5, 0) == _message(check_components, 5, 3)
    # More components than training images: found by run_vae before training, with the same rule.
    n = len(load_splits("mnist", str(FIXTURE_DATA), 100, 0, False, 0, 0).train)
    message = _cli_error(VAE, [*cli_options(TINY_DATA), "--prior_components", str(n + 1)])
    assert message == _message(check_components, n + 1, n, "prior_components")
