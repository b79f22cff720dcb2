"""User mistakes end in one clear line and a non-zero exit, never a traceback."""

import pytest
from click.testing import CliRunner

from latent_models import cli
from tests.conftest import FIXTURE_DATA


@pytest.mark.parametrize(
    "command,args,message",
    [
        (cli.ae, ["--dataset", "cifar10"], "dataset must be one of mnist, fashion-mnist; got 'cifar10'"),
        (cli.ae, ["--noise_level", "-0.2"], "noise_level must be >= 0, got -0.2"),
        (cli.ae, ["--noise", "speckle"], "noise must be one of"),
        (cli.ae, ["--latent_dim", "0"], "latent_dim must be > 0, got 0"),
        (cli.vae, ["--latent_dim", "0"], "latent_dim must be > 0, got 0"),
        (cli.vae, ["--likelihood", "gaussian", "--binarize", "true"], "binarize=true needs likelihood=bernoulli"),
        (cli.main, ["--ae_epochs", "0"], "ae_epochs must be > 0"),
        (cli.vae, ["--adam_beta2", "1"], "adam_beta2 must be in [0, 1), got 1.0"),
        (cli.ae, ["--nproc_per_node", "0"], "nproc_per_node must be > 0, got 0"),
        (cli.vae, ["--nproc_per_node", "3", "--batch_size", "128"],
         "batch_size (128) must be divisible by nproc_per_node (3)"),
        (cli.ae, ["--nproc_per_node", "2", "--resume", "last"], "resume runs in one process"),
    ],
)
def test_bad_params_give_one_clear_error(command, args, message, tracking):
    result = CliRunner().invoke(command, args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_data_is_a_clear_error(tmp_path, tracking):
    result = CliRunner().invoke(cli.ae, ["--data_dir", str(tmp_path / "nowhere"), "--download", "false"])
    assert result.exit_code == 1
    assert "train-images-idx3-ubyte" in result.output and "download is off" in result.output
    assert "Traceback" not in result.output


def test_integer_params_accept_mlflow_float_spelling(tracking):
    # `mlflow run -P epochs=2.0` passes the text through: integers must accept it.
    result = CliRunner().invoke(cli.ae, ["--epochs", "2.5", "--data_dir", str(FIXTURE_DATA)])
    assert result.exit_code != 0 and "2.5 is not a whole number" in result.output
