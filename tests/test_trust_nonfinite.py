"""Issue 9, item 5: a model with NaN/inf outputs is never certified, and a diverging training run
stops with an error naming the epoch instead of saving the broken state."""
from __future__ import annotations

import math

import pytest
import torch

import wulff.distributions as D
from wulff.certify import Smoothed
from wulff.cli import main
from wulff.errors import NonFiniteError
from wulff.train import TrainConfig, build_model, load_dataset, load_trained, train_smoothed

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Poisoned(torch.nn.Module):
    """A linear 3-class model whose logits are replaced by ``bad`` (nan or inf) in some rows."""

    def __init__(self, bad: float, every: int = 1):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)
        self.bad, self.every = bad, every

    def forward(self, x):
        logits = self.linear(x.flatten(1)).clone()
        logits[:: self.every, 0] = self.bad
        return logits


@pytest.mark.parametrize("bad, every", [(math.nan, 1), (math.inf, 1), (math.nan, 97)])
def test_certify_and_predict_refuse_non_finite_logits(bad, every):
    s = Smoothed(Poisoned(bad, every), D.Gaussian(4, sigma=0.5), num_classes=3, seed=0)
    with pytest.raises(NonFiniteError, match="NaN or infinite logits"):
        s.certify(torch.zeros(4), 16, 200, 0.01, 64)
    with pytest.raises(NonFiniteError, match="NaN or infinite logits"):
        s.predict(torch.zeros(4), 200, 0.01, 64)


def test_finite_logits_still_certify():
    s = Smoothed(Poisoned(5.0), D.Gaussian(4, sigma=0.5), num_classes=3, seed=0)
    assert s.certify(torch.zeros(4), 16, 200, 0.01, 64).prediction == 0


class Switch(torch.nn.Module):
    """Wraps a model; once ``poison`` is set its logits are NaN (a diverged network)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.poison = False

    def forward(self, x):
        out = self.inner(x)
        return out * math.nan if self.poison else out


def test_training_that_diverges_names_the_epoch_and_keeps_the_last_good_checkpoint(tmp_path):
    train_set, info = load_dataset("digits", "train")
    q = D.Gaussian(info.d, sigma=0.5)
    torch.manual_seed(0)
    model = Switch(build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std))
    ckpt = tmp_path / "c.pt"
    train_smoothed(model, q, train_set, TrainConfig(epochs=1, batch_size=512), checkpoint=ckpt, progress=False)
    good = torch.load(ckpt, weights_only=True)
    model.poison = True
    with pytest.raises(NonFiniteError, match="diverged in epoch 2"):
        train_smoothed(model, q, train_set, TrainConfig(epochs=3, batch_size=512), checkpoint=ckpt,
                       progress=False)
    kept = torch.load(ckpt, weights_only=True)
    assert kept["epoch"] == 1
    for name, tensor in kept["model"].items():
        torch.testing.assert_close(tensor, good["model"][name])


def test_train_command_fails_on_a_nan_loss_and_writes_no_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--sigma", "0.5", "--epochs", "2", "--lr", "1e30", "--batch-size", "256",
                 "--out", str(out), "--no-progress", "--threads", "1"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "epoch 1" in err
    assert not (out / "checkpoint.pt").exists()
    with pytest.raises(FileNotFoundError):
        load_trained(out / "checkpoint.pt")
