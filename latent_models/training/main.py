"""The `main` entry point: both models under one parent run, data loaded once."""

from __future__ import annotations

from latent_models import tracking
from latent_models.config import MainConfig
from latent_models.data import load_data
from latent_models.device import check as check_device
from latent_models.device import device_tags
from latent_models.kinds import trained_by
from latent_models.options import as_params
from latent_models.training.pipeline import run_pipeline

# Each child's results the parent run shows (prefixed with the child's entry point).
SUMMARISED = {
    "ae": ("test_psnr", "test_psnr_noisy"),
    "vae": ("test_neg_elbo", "test_iw_nll", "test_neg_elbo_bits_per_dim"),
}


def run_main(cfg: MainConfig) -> dict:
    children = cfg.children()
    data = load_data(cfg)
    with tracking.training_run(cfg.experiment_name, cfg.run_name) as parent:
        tracking.log_params(as_params(cfg))
        tracking.set_tags(device_tags(*check_device(cfg.device, cfg.precision)))
        runs = {}
        for entry_point, child in children.items():
            child.run_name = entry_point
            recipe = trained_by(entry_point).recipe()
            runs[entry_point] = run_pipeline(recipe, child, parent_run_id=parent.info.run_id, data=data)
        tracking.log_metrics({f"{ep}_{k}": runs[ep][k] for ep, keys in SUMMARISED.items() for k in keys})
        return {"run_id": parent.info.run_id, "runs": runs}
