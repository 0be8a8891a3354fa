"""Issue 9, items 1 and 4: checkpoints and CIFAR-10 batches are data, never code.

Each malicious file below would create a marker file when unpickled by plain ``pickle`` /
``torch.load(weights_only=False)``; loading must be refused and the marker must not appear.
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from wulff.cli import main
from wulff.errors import CheckpointError, UserError
from wulff.train import (
    TrainConfig,
    build_model,
    load_dataset,
    load_trained,
    named_distribution,
    train_smoothed,
    training_meta,
)
from wulff.train.data import restricted_load

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Payload:
    """Unpickling this calls open(marker, "w"): a stand-in for any code an attacker wants to run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_the_payload_runs_under_plain_pickle(tmp_path):
    """The test's premise: an unrestricted load does run the payload."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker))).close()
    assert marker.exists()


@pytest.fixture
def evil_checkpoint(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    meta = {"model": "mlp", "input_shape": [1, 8, 8], "num_classes": 10, "distribution": Payload(marker)}
    torch.save({"model": {}, "meta": meta, "epoch": 1, "optimizer": {}, "history": []}, path)
    return path, marker


def test_load_trained_refuses_a_checkpoint_that_would_run_code(evil_checkpoint):
    path, marker = evil_checkpoint
    with pytest.raises(CheckpointError, match="not a wulff checkpoint.*nothing in it was run"):
        load_trained(path)
    assert not marker.exists()


def test_training_resume_refuses_a_checkpoint_that_would_run_code(evil_checkpoint):
    path, marker = evil_checkpoint
    train_set, info = load_dataset("digits", "train")
    q = named_distribution("Gaussian", info.d, sigma=0.5)
    model = build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std)
    with pytest.raises(CheckpointError):
        train_smoothed(model, q, train_set, TrainConfig(epochs=1), checkpoint=path, progress=False)
    assert not marker.exists()


def test_certify_command_refuses_it_in_one_line(evil_checkpoint, tmp_path, capsys):
    path, marker = evil_checkpoint
    assert main(["certify", str(path), "--out", str(tmp_path / "r.tsv"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a wulff checkpoint" in err
    assert not marker.exists() and not (tmp_path / "r.tsv").exists()


def test_a_real_checkpoint_loads_with_weights_only(tmp_path):
    train_set, info = load_dataset("digits", "train")
    q = named_distribution("ExpInf", info.d, sigma=0.5, params={"k": 2})
    model = build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std)
    path = tmp_path / "c.pt"
    train_smoothed(model, q, train_set, TrainConfig(epochs=1, batch_size=512), checkpoint=path,
                   meta=training_meta("mlp", info, q), progress=False)
    state = torch.load(path, weights_only=True)  # plain data only, or this raises
    assert state["meta"]["distribution"]["params"]["k"] == 2
    loaded, q2, _ = load_trained(path)
    assert q2.name == "ExpInf"


def fake_batch(rng, count=4) -> dict:
    return {b"batch_label": b"testing batch 1 of 1", b"labels": list(range(count)),
            b"data": rng.integers(0, 256, size=(count, 3072), dtype=np.uint8),
            b"filenames": [f"img{i}.png".encode() for i in range(count)]}


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_benign_cifar_batch_loads_under_the_restricted_unpickler(tmp_path, protocol):
    batch = fake_batch(np.random.default_rng(1))
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    back = restricted_load(path)
    np.testing.assert_array_equal(back[b"data"], batch[b"data"])
    assert back[b"labels"] == batch[b"labels"] and back[b"filenames"] == batch[b"filenames"]


def test_a_malicious_cifar_batch_is_refused_without_running(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "ran"
    batch = fake_batch(np.random.default_rng(2))
    batch[b"labels"] = Payload(marker)
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UserError, match="test_batch.*refused to load builtins.open|refused to load"):
        load_dataset("cifar10", "test", str(folder))
    assert not marker.exists()
