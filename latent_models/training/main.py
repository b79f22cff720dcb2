"""The `main` entry point: both models under one parent run, data loaded once."""

from __future__ import annotations

from latent_models import tracking
from latent_models.config import MainConfig, as_params
from latent_models.data import load_data
from latent_models.device import check as check_device
from latent_models.device import device_tags
from latent_models.training.denoiser import run_ae
from latent_models.training.vae import run_vae


def run_main(cfg: MainConfig) -> dict:
    ae_cfg, vae_cfg = cfg.ae_config(), cfg.vae_config()
    data = load_data(cfg)
    with tracking.training_run(cfg.experiment_name, cfg.run_name) as parent:
        tracking.log_params(as_params(cfg))
        tracking.set_tags(device_tags(*check_device(cfg.device, cfg.precision)))
        ae_cfg.run_name, vae_cfg.run_name = "ae", "vae"
        ae = run_ae(ae_cfg, parent_run_id=parent.info.run_id, data=data)
        vae = run_vae(vae_cfg, parent_run_id=parent.info.run_id, data=data)
        tracking.log_metrics(
            {
                "ae_test_psnr": ae["test_psnr"],
                "ae_test_psnr_noisy": ae["test_psnr_noisy"],
                "vae_test_neg_elbo": vae["test_neg_elbo"],
                "vae_test_iw_nll": vae["test_iw_nll"],
                "vae_test_neg_elbo_bits_per_dim": vae["test_neg_elbo_bits_per_dim"],
            }
        )
        return {"run_id": parent.info.run_id, "runs": {"ae": ae, "vae": vae}}
