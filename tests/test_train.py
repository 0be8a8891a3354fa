"""wulff.train: noise-augmented training, checkpoint/resume, models and local datasets."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from toys import fake_cifar10

import wulff.distributions as D
from wulff.cli.arguments import parse_params
from wulff.train import (
    Normalize,
    TrainConfig,
    build_model,
    distribution_from_spec,
    distribution_spec,
    load_dataset,
    load_trained,
    named_distribution,
    noisy_loss,
    train_smoothed,
    training_meta,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train")


def fixed_noisy_loss(model, q, dataset, seed=123) -> float:
    x, y = dataset.tensors
    model.eval()
    with torch.no_grad():
        return float(noisy_loss(model, q, x[:512], y[:512], torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("family", ["Gaussian", "Laplace", "UniformCube"])
def test_a_few_training_steps_lower_the_noisy_loss(digits, family):
    train_set, info = digits
    q = named_distribution(family, info.d, sigma=0.5)
    torch.manual_seed(0)
    model = build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std)
    before = fixed_noisy_loss(model, q, train_set)
    train_smoothed(model, q, train_set, TrainConfig(epochs=1, batch_size=64, lr=0.05), progress=False,
                   max_steps=15)
    after = fixed_noisy_loss(model, q, train_set)
    assert before > 2.0  # about log(10) for an untrained model
    assert after < before - 0.5


def test_noise_is_added_to_the_inputs(digits):
    """noisy_loss evaluates the model on x + delta: with an identity 'model' the logits move."""
    train_set, info = digits
    x, y = train_set.tensors[0][:4].flatten(1), train_set.tensors[1][:4]
    seen = []
    model = lambda z: seen.append(z) or z[:, :10]
    noisy_loss(model, D.Gaussian(info.d, sigma=1.0), x, y, torch.Generator().manual_seed(0))
    delta = seen[0] - x
    assert delta.abs().mean() > 0.5 and delta.std() == pytest.approx(1.0, rel=0.3)


def test_checkpoint_resume_matches_an_uninterrupted_run(digits, tmp_path):
    train_set, info = digits
    q = D.Laplace(info.d, sigma=0.5)
    config = TrainConfig(epochs=3, batch_size=256, lr=0.05, seed=3)

    def fresh():
        torch.manual_seed(0)
        return build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std)

    straight = fresh()
    full = train_smoothed(straight, q, train_set, config, progress=False)
    ckpt = tmp_path / "checkpoint.pt"
    first = fresh()
    partial = train_smoothed(first, q, train_set, config, checkpoint=ckpt, progress=False,
                             max_steps=14)  # 6 steps per epoch: stops inside epoch 3, as a crash would
    assert len(partial) == 2
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    resumed = fresh()
    logs = []
    history = train_smoothed(resumed, q, train_set, config, checkpoint=ckpt, progress=False, log=logs.append)
    assert "resuming" in logs[0]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["loss"] == pytest.approx(full[-1]["loss"], rel=1e-5)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_checkpoint_rebuilds_model_and_noise(digits, tmp_path):
    train_set, info = digits
    q = named_distribution("ExpInf", info.d, sigma=0.3, params={"k": 2})
    model = build_model("cnn", info.input_shape, info.num_classes, info.mean, info.std)
    ckpt = tmp_path / "c.pt"
    train_smoothed(model, q, train_set, TrainConfig(epochs=1, batch_size=128, lr=0.01), checkpoint=ckpt,
                   meta=training_meta("cnn", info, q), progress=False)
    loaded, q2, meta = load_trained(ckpt)
    assert (q2.name, q2.params, q2.d) == ("ExpInf", q.params, q.d) and q2.lam == pytest.approx(q.lam)
    assert meta["sigma"] == pytest.approx(0.3)
    model.eval()
    x = train_set.tensors[0][:5]
    torch.testing.assert_close(loaded(x), model(x))


def test_models_map_inputs_to_logits():
    for name, shape in (("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("cnn", (3, 32, 32)), ("resnet18", (3, 32, 32))):
        model = build_model(name, shape, 10, mean=[0.5] * shape[0], std=[0.25] * shape[0]).eval()
        assert model(torch.rand(2, *shape)).shape == (2, 10)
    resnet = build_model("resnet18", (3, 32, 32), 10)
    assert 11.0e6 < sum(p.numel() for p in resnet.parameters()) < 11.3e6  # ResNet-18 (CIFAR): 11.17M


def test_normalize_is_the_first_layer():
    model = build_model("mlp", (3, 4, 4), 2, mean=[0.1, 0.2, 0.3], std=[1, 2, 4])
    assert isinstance(model[0], Normalize)
    x = torch.ones(1, 3, 4, 4)
    np.testing.assert_allclose(model[0](x)[0, :, 0, 0].numpy(), [0.9, 0.4, 0.175], rtol=1e-6)
    with pytest.raises(ValueError, match="model must be one of"):
        build_model("vgg", (3, 4, 4), 2)


def test_digits_split(digits):
    train_set, info = digits
    test_set, _ = load_dataset("digits", "test")
    assert len(train_set) == 1347 and len(test_set) == 450 and info.input_shape == (1, 8, 8) and info.d == 64
    x, y = train_set.tensors
    assert x.min() >= 0 and x.max() <= 1 and set(y.tolist()) == set(range(10))


def test_cifar10_from_a_local_pickle_folder(tmp_path):
    folder = fake_cifar10(tmp_path)
    train_set, info = load_dataset("cifar10", "train", str(tmp_path))
    test_set, _ = load_dataset("cifar10", "test", str(folder))
    assert len(train_set) == 20 and len(test_set) == 4 and info.input_shape == (3, 32, 32)
    x, y = test_set[3]
    assert x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1 and int(y) == 9


@pytest.mark.parametrize("name, hint", [("cifar10", "data_batch_1"), ("imagenet", "train/<class>")])
def test_missing_dataset_folder_says_what_to_put_where(tmp_path, name, hint):
    with pytest.raises(FileNotFoundError, match=hint.replace("<", ".").replace(">", ".")):
        load_dataset(name, "train", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        load_dataset(name, "train", None)


def test_distribution_spec_round_trip_and_bad_names():
    q = named_distribution("power2", 10, sigma=0.5, params=parse_params(["a=20", "k=2"]))
    back = distribution_from_spec(distribution_spec(q))
    assert (back.name, back.params, back.d) == ("Power2", {"a": 20.0, "k": 2.0}, 10)
    assert back.lam == pytest.approx(q.lam)
    with pytest.raises(ValueError, match="unknown distribution"):
        named_distribution("Cauchy", 3, sigma=1.0)
    with pytest.raises(ValueError, match="name=value"):
        parse_params(["k2"])


def test_bad_training_settings():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="autocast"):
        TrainConfig(autocast="int8")
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_dataset("mnist")


def test_torchvision_architectures_are_optional():
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="needs torchvision"):
            build_model("torchvision:resnet50", (3, 224, 224), 1000)
    else:
        model = build_model("torchvision:resnet18", (3, 64, 64), 7)
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 7)
