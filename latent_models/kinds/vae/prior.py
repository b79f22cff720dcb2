"""A Gaussian-mixture prior fitted to a VAE's aggregate posterior.

N(0, I) puts mass where the encoder never put a training digit (the "holes" between
classes), so decoded samples there are blurry non-digits. A mixture fitted to the
training-set latent means samples where digits are. Fitting uses scikit-learn; sampling
and storage are plain tensors, so a served model needs only torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from latent_models.kinds.vae.config import check_components


@dataclass
class GaussianMixturePrior:
    weights: torch.Tensor  # (K,)
    means: torch.Tensor  # (K, D)
    scale_tril: torch.Tensor  # (K, D, D): Cholesky factors of the covariances

    @property
    def components(self) -> int:
        return self.weights.shape[0]

    @property
    def latent_dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latent vectors; `temperature` scales the spread within each component."""
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn((n, self.latent_dim), generator=generator) * temperature
        return self.means[component] + (self.scale_tril[component] @ eps.unsqueeze(-1)).squeeze(-1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights, "means": self.means, "scale_tril": self.scale_tril}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> "GaussianMixturePrior":
        return cls(state["weights"].float(), state["means"].float(), state["scale_tril"].float())


def fit_gaussian_mixture(latents: torch.Tensor, components: int, seed: int) -> GaussianMixturePrior:
    """Full-covariance mixture on (N, D) latent means, fitted by EM (k-means initialised)."""
    from sklearn.mixture import GaussianMixture

    check_components(components, latents.shape[0])
    gmm = GaussianMixture(
        n_components=components, covariance_type="full", reg_covar=1e-5, random_state=seed, max_iter=200
    )
    gmm.fit(latents.double().numpy())
    covariances = torch.from_numpy(gmm.covariances_)
    return GaussianMixturePrior(
        weights=torch.from_numpy(gmm.weights_).float(),
        means=torch.from_numpy(gmm.means_).float(),
        scale_tril=torch.linalg.cholesky(covariances).float(),
    )
