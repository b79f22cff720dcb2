"""The words of a VampPrior VAE's run report and registry page (rendered by
`evaluation.report`): the VAE's, but for the prior and the KL it has no closed form for."""

from __future__ import annotations

from latent_models.evaluation import figures
from latent_models.evaluation.report import DOCS_PAGE
from latent_models.kinds.vae import report as vae

TITLE = "VampPrior variational autoencoder"

METRIC_MEANINGS = {
    **vae.METRIC_MEANINGS,
    "val_kl": "KL term of the validation −ELBO in nats per image: log q(z|x) − log p(z) at the one z decoded "
    "(one sample: the learned prior has no closed-form KL).",
    "test_kl": "KL term of the test −ELBO: how many nats the codes carry beyond the learned prior (the one-sample "
    "estimate log q(z|x) − log p(z)).",
}

FIGURE_CAPTIONS = {
    **{k: v for k, v in vae.FIGURE_CAPTIONS.items() if k != figures.SAMPLES_FITTED_PRIOR},
    figures.SAMPLES: "New digits: codes drawn from the learned prior (a pseudo-input at random, then a draw "
    "from its posterior), decoded. No mixture is fitted after training.",
}

EXPLANATIONS = [
    (
        "What this model does",
        [
            "A VAE (encoder q(z|x), decoder p(x|z), trained on the ELBO) whose prior is learned: "
            "p(z) = (1/K) Σ_k q(z | u_k), the encoder's own posteriors at K learned pseudo-inputs u_k, mixed "
            "equally (the VampPrior, Tomczak & Welling 2018). A prior N(0, I) leaves holes between the "
            "classes, where decoded samples are blurry non-digits; the learned prior follows the codes the "
            "encoder gives real images, so samples drawn from it look like the data, and the KL term costs "
            "fewer nats. The encoder and decoder are residual convolutional networks.",
        ],
    ),
    *vae.EXPLANATIONS[1:],
]


def summary(cfg, m: dict[str, float]) -> list[str]:
    text = vae.summary(cfg, m)
    text[0] = text[0].replace(
        "trained a VAE with",
        "trained a VampPrior VAE (prior: a mixture of the posteriors at "
        f"{cfg.pseudo_inputs} learned pseudo-inputs) with",
        1,
    )
    return text


REGISTERED_MODEL_DESCRIPTION = (
    "A convolutional VAE with a learned VampPrior: it reconstructs images (the default mode), draws new "
    'ones from its prior (`params: {{"mode": "sample", "n": 16, "seed": 0}}`), decodes latent vectors '
    '(`"mode": "decode"`) and scores images by their −log p(x) (`"mode": "score"`, `"k": 100`).\n\n'
    "Serve the champion: `mlflow models serve -m models:/{name}@champion -p 5002 --env-manager local`, "
    "then POST to `/invocations`. Every version's description says what it was trained on and how it "
    "scored. Docs: " + DOCS_PAGE + "."
)
