"""The run report (latent_models/report.py) from plain data: what it says, that it embeds the
figures, and that it escapes whatever a run can put in it. tests/test_docs.py checks
the report a real run logs."""

import base64
import io
from html.parser import HTMLParser

import mlflow
import pytest
from PIL import Image

from latent_models.evaluation import report
from latent_models.kinds import kind
from latent_models.kinds.denoiser.config import AEConfig
from latent_models.kinds.vae.config import VAEConfig
from latent_models.options import as_params
from latent_models.tracking import logged_files

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
AE_METRICS = {
    "test_psnr": 28.13,
    "test_ssim": 0.9312,
    "test_mse": 0.00161,
    "test_psnr_noisy": 19.52,
    "test_ssim_noisy": 0.4411,
    "test_mse_noisy": 0.01116,
    "best_epoch": 1,
    "train_seconds": 210.5,
    "train_images_per_second": 1320.4,
}
VAE_METRICS = {
    "test_neg_elbo": 95.21,
    "test_recon": 70.11,
    "test_kl": 25.1,
    "test_active_units": 14.0,
    "test_iw_nll": 90.34,
    "test_iw_nll_stderr": 0.2113,
    "test_neg_elbo_bits_per_dim": 0.1752,
    "test_iw_nll_bits_per_dim": 0.1662,
    "iw_nll_seconds": 30.2,
    "best_epoch": 1,
    "train_seconds": 600.0,
    "train_images_per_second": 1201.7,
}
HISTORY = {
    "denoiser": [
        {"train_loss": 0.2, "val_loss": 0.19, "val_psnr": 26.5, "val_ssim": 0.9, "lr": 0.003},
        {"train_loss": 0.1, "val_loss": 0.09, "val_psnr": 28.0, "val_ssim": 0.93, "lr": 1e-5},
    ],
    "vae": [
        {
            "train_loss": 120.0,
            "train_neg_elbo": 130.0,
            "kl_weight": 0.5,
            "val_neg_elbo": 110.0,
            "val_recon": 90.0,
            "val_kl": 20.0,
            "val_active_units": 12.0,
            "val_neg_elbo_bits_per_dim": 0.2023,
            "lr": 0.003,
        },
        {
            "train_loss": 96.0,
            "train_neg_elbo": 96.0,
            "kl_weight": 1.0,
            "val_neg_elbo": 95.0,
            "val_recon": 70.0,
            "val_kl": 25.0,
            "val_active_units": 14.0,
            "val_neg_elbo_bits_per_dim": 0.1748,
            "lr": 1e-5,
        },
    ],
}
CASES = {"denoiser": (AEConfig, AE_METRICS), "vae": (VAEConfig, VAE_METRICS)}


def _png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), color=shade).save(buffer, format="PNG")
    return buffer.getvalue()


class Page(HTMLParser):
    """The report as a test reads it: start tags, images, and per section (the id of the
    preceding h2) its text, its h3 headings and its table rows as (class, cell texts)."""

    def __init__(self, document: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.images, self.captions = [], [], []
        self.text, self.headings, self.rows = {}, {}, {}
        self._section, self._cells, self._open = "top", None, None
        self.feed(document)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "h2":
            self._section = attrs["id"]
        elif tag == "tr":
            self._cells = []
            self.rows.setdefault(self._section, []).append((attrs.get("class", ""), self._cells))
        elif tag in ("td", "th", "h3", "figcaption"):
            self._open = [tag, ""]
        elif tag == "img":
            self.images.append(attrs)

    def handle_endtag(self, tag):
        if not self._open or tag != self._open[0]:
            return
        text = self._open[1].strip()
        if tag == "h3":
            self.headings.setdefault(self._section, []).append(text)
        elif tag == "figcaption":
            self.captions.append(text)
        else:
            self._cells.append(text)
        self._open = None

    def handle_data(self, data):
        self.text[self._section] = self.text.get(self._section, "") + data
        if self._open:
            self._open[1] += data


def _render(model_type="denoiser", figures=None, run_name="nightly", **overrides) -> Page:
    config_class, metrics = CASES[model_type]
    metrics = {**metrics, **overrides.pop("metrics", {})}
    return Page(
        report.render(
            model_type, config_class(**overrides), metrics, HISTORY[model_type], figures or {}, run_name, "0123abcd"
        )
    )


def _table(page: Page, section: str) -> dict[str, list[str]]:
    """First cell -> the other cells, for each body row of the section's table."""
    return {cells[0]: cells[1:] for _, cells in page.rows[section][1:]}


@pytest.mark.parametrize("model_type", ["denoiser", "vae"])
def test_every_config_value_and_every_metric_with_its_meaning(model_type):
    config_class, metrics = CASES[model_type]
    page = _render(model_type, seed=7, epochs=3)

    results = _table(page, "results")
    assert set(results) == set(metrics)
    for name, (value, meaning) in results.items():
        assert float(value.replace(",", "")) == pytest.approx(metrics[name], rel=1e-3), name
        assert meaning and meaning == report.metric_meanings(model_type)[name].replace("`", ""), name

    spelled = {True: "true", False: "false", "": "(empty)"}
    expected = {
        k: spelled.get(v, str(v)) if isinstance(v, (bool, str)) else str(v)
        for k, v in as_params(config_class(seed=7, epochs=3)).items()
    }
    assert {k: cells[0] for k, cells in _table(page, "config").items()} == expected
    assert all(cells[1] for cells in _table(page, "config").values())  # each param's help text


def test_every_per_epoch_metric_explained_and_the_kept_epoch_marked():
    page = _render("vae")
    header = page.rows["history"][0][1]
    assert header == ["epoch", *HISTORY["vae"][0]]
    assert [cells[0] for cls, cells in page.rows["history"] if cls == "best"] == [str(VAE_METRICS["best_epoch"] + 1)]
    for name in HISTORY["vae"][0]:
        assert report.metric_meanings("vae")[name].replace("`", "") in page.text["history"], name


def test_figures_embedded_as_the_logged_png_files_with_captions():
    figures = {
        "figures/samples.png": _png(10),
        "figures/extra.png": _png(20),
        "figures/loss_curves.png": _png(30),
        "figures/notes.txt": b"not an image",
    }
    page = _render("vae", figures)
    embedded = []
    for image in page.images:
        prefix, data = image["src"].split(",", 1)
        assert prefix == "data:image/png;base64"
        embedded.append(base64.b64decode(data, validate=True))
    # Known figures in the order of the kind's captions, then any other image; other files left out.
    assert embedded == [
        figures["figures/loss_curves.png"],
        figures["figures/samples.png"],
        figures["figures/extra.png"],
    ]
    assert all(data.startswith(PNG_SIGNATURE) for data in embedded)
    captions = kind("vae").texts().FIGURE_CAPTIONS
    assert page.captions == [
        f"figures/loss_curves.png {captions['figures/loss_curves.png']}",
        f"figures/samples.png {captions['figures/samples.png']}",
        "figures/extra.png",
    ]
    assert "no figures" in _render("vae", {}).text["figures"]


def test_hostile_run_name_config_and_figure_path_are_shown_not_run():
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;'
    cfg = AEConfig(run_name=hostile, data_dir=hostile)
    page = Page(
        report.render(
            "denoiser", cfg, AE_METRICS, HISTORY["denoiser"], {f"figures/{hostile}.png": _png(40)}, hostile, "0123abcd"
        )
    )
    assert "script" not in page.tags
    assert len(page.images) == 1 and set(page.images[0]) == {"src", "alt"}
    assert hostile in page.text["top"]  # the run name, shown as text
    config = _table(page, "config")
    assert config["run_name"][0] == hostile and config["data_dir"][0] == hostile
    assert page.captions == [f"figures/{hostile}.png"]


def test_explanations_follow_the_model_type():
    ae, vae = _render("denoiser"), _render("vae")
    shared = {"Autoencoder or variational autoencoder?", "Noise in the input or noise in the latent space"}
    assert shared <= set(ae.headings["background"]) and shared <= set(vae.headings["background"])
    assert set(ae.headings["background"]) != set(vae.headings["background"])
    ae_text, vae_text = ae.text["background"].lower(), vae.text["background"].lower()
    for text in (ae_text, vae_text):
        assert "noise in the input" in text and "noise in the latent space" in text
    for topic in ("iterative reconstruction", "fed back in", "psnr", "ssim", "noisy input", "skip connections"):
        assert topic in ae_text and topic not in vae_text, topic
    for topic in (
        "reparameterization",
        "kl warm-up",
        "active units",
        "posterior collapse",
        "−elbo",
        "importance-weighted",
    ):
        assert topic in vae_text and topic not in ae_text, topic
    assert "Denoising autoencoder: run report" in ae.text["top"]
    assert "Variational autoencoder: run report" in vae.text["top"]


def test_summary_reads_this_runs_numbers():
    good = _render("denoiser").text["summary"]
    assert "28.13 dB PSNR from 19.52 dB" in good and "+8.61 dB" in good and "negative gain" not in good
    assert "negative gain" in _render("denoiser", metrics={"test_psnr": 9.0}).text["summary"]

    healthy = _render("vae", latent_dim=16).text["summary"]
    assert "14 of 16 latent units are active" in healthy and "posterior collapse" not in healthy
    assert "95.21 nats per image (0.175 bits per dimension)" in healthy
    older = {k: v for k, v in VAE_METRICS.items() if not k.endswith("_bits_per_dim")}  # a run before bits/dim
    assert "95.21 nats per image = reconstruction" in report.summary("vae", VAEConfig(), older)[0]
    assert "posterior collapse" in _render("vae", latent_dim=16, metrics={"test_active_units": 1.0}).text["summary"]
    assert "from the start" in _render("vae", kl_warmup_epochs=0).text["summary"]


@pytest.mark.usefixtures("tracking")
def test_logged_files_reads_back_exactly_what_the_run_logged():
    with mlflow.start_run():
        assert logged_files("figures") == {}
        mlflow.log_text("a", "figures/a.txt")
        mlflow.log_text("b", "figures/sub/b.txt")
        mlflow.log_text("elsewhere", "other/c.txt")
        assert logged_files("figures") == {"figures/a.txt": b"a", "figures/sub/b.txt": b"b"}
