import torch

from latent_models.data import load_splits
from latent_models.kinds.classifier.config import ClassifierConfig
from latent_models.kinds.classifier.model import DigitClassifier
from tests.conftest import FIXTURE_DATA


def test_logits_and_features_shapes():
    model = DigitClassifier(ClassifierConfig()).eval()
    x = torch.rand(5, 1, 28, 28)
    assert model(x).shape == (5, 10)
    assert model.features(x).shape == (5, 128)
    assert (model.features(x) >= 0).all()  # after a ReLU


def test_a_few_steps_fit_a_small_batch_of_digits():
    torch.manual_seed(0)
    model = DigitClassifier(ClassifierConfig(width=8))
    split = load_splits("mnist", str(FIXTURE_DATA), 100, 0, False).train
    x, y = split.images[:64], split.labels[:64]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first
