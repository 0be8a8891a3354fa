"""wulff.train.objectives: each loss against a direct computation of its formula (loops over inputs and
noise draws), gradients, the MACER radius term against the certified radius and closed forms,
checkpoint identity, autocast, DDP, and fine-tuning with --init."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from scipy.stats import norm
from test_distributed import free_port
from toys import join_process_group, run_cli

import wulff
import wulff.distributions as D
from wulff.errors import CheckpointError, UserError
from wulff.train import (
    TrainConfig,
    build_model,
    load_dataset,
    named_noise,
    save_checkpoint,
    train_smoothed,
    training_meta,
)
from wulff.train.finetune import init_from_checkpoint
from wulff.train.objectives import (
    OBJECTIVES,
    build_objective,
    macer_radius_term,
    natural_adversary,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

D_IN, CLASSES, BATCH = 6, 3, 5


@pytest.fixture()
def batch():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(D_IN, 8), torch.nn.Tanh(), torch.nn.Linear(8, CLASSES))
    x = torch.rand(BATCH, D_IN)
    y = torch.tensor([0, 1, 2, 1, 0])
    return model, x, y


def draws(q, m, seed=7):
    """The noise every objective draws first from a generator seeded with ``seed``: (m, B, d)."""
    return q.sample(m * BATCH, generator=torch.Generator().manual_seed(seed)).view(m, BATCH, D_IN)


def probs(model, z) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(z.unsqueeze(0)).double(), dim=1)[0].numpy()


def loss_of(name, model, q, x, y, params=None, **kw) -> float:
    objective = build_objective(name, params, q)
    with torch.no_grad():
        return float(objective.loss(model, q, x, y, torch.Generator().manual_seed(7), **kw))


def kl(a, b):
    return float(np.sum(a * np.log(a / b)))


def test_noise_is_cross_entropy_at_one_noisy_copy(batch):
    model, x, y = batch
    q = D.Laplace(D_IN, sigma=0.5)
    noise = draws(q, 1)[0]
    expected = np.mean([-math.log(probs(model, x[i] + noise[i])[y[i]]) for i in range(BATCH)])
    assert loss_of("noise", model, q, x, y) == pytest.approx(expected, rel=1e-5)


def test_stability_is_cross_entropy_plus_weighted_kl(batch):
    model, x, y = batch
    q = D.Gaussian(D_IN, sigma=0.5)
    noise = draws(q, 2)
    terms = []
    for i in range(BATCH):
        p1, p2 = probs(model, x[i] + noise[0, i]), probs(model, x[i] + noise[1, i])
        terms.append(-math.log(p1[y[i]]) + 3.0 * kl(p1, p2))
    assert loss_of("stability", model, q, x, y, {"weight": 3}) == pytest.approx(np.mean(terms), rel=1e-5)
    assert build_objective("stability").params == {"weight": 6.0}


def test_direct_is_the_smoothed_log_likelihood(batch):
    model, x, y = batch
    q = D.UniformCube(D_IN, sigma=0.5)
    noise = draws(q, 5)
    expected = np.mean([-math.log(np.mean([probs(model, x[i] + noise[j, i])[y[i]] for j in range(5)]))
                        for i in range(BATCH)])
    assert loss_of("direct", model, q, x, y, {"m": 5}) == pytest.approx(expected, rel=1e-5)


def test_consistency_follows_jeong_and_shin(batch):
    model, x, y = batch
    q = D.Gaussian(D_IN, sigma=0.5)
    m, lam, eta = 3, 10.0, 0.5
    noise = draws(q, m)
    terms = []
    for i in range(BATCH):
        ps = [probs(model, x[i] + noise[j, i]) for j in range(m)]
        mean = np.mean(ps, axis=0)
        terms.append(np.mean([-math.log(p[y[i]]) for p in ps]) + lam * np.mean([kl(mean, p) for p in ps])
                     - eta * float(np.sum(mean * np.log(mean))))
    assert loss_of("consistency", model, q, x, y, {"m": m}) == pytest.approx(np.mean(terms), rel=1e-5)
    assert build_objective("consistency").params == {"m": 2, "lambda": 10.0, "eta": 0.5}


def test_macer_is_direct_plus_the_radius_hinge(batch):
    model, x, y = batch
    q = D.Gaussian(D_IN, sigma=0.5)
    m, beta, gamma, weight = 4, 2.0, 8.0, 12.0
    noise = draws(q, m)
    ce, hinge = [], 0.0
    for i in range(BATCH):
        logits = [model((x[i] + noise[j, i]).unsqueeze(0))[0].detach().double().numpy() for j in range(m)]
        soft = np.mean([np.exp(v - v.max()) / np.exp(v - v.max()).sum() for v in logits], axis=0)
        sharp = np.mean([np.exp(beta * (v - v.max())) / np.exp(beta * (v - v.max())).sum() for v in logits],
                        axis=0)
        ce.append(-math.log(soft[y[i]]))
        if np.argmax(sharp) == y[i]:
            radius = 0.5 * norm.ppf(sharp[y[i]]) if sharp[y[i]] > 0.5 else 0.0  # sigma Phi^-1(rho), Gaussian/l2
            hinge += max(0.0, gamma * 0.5 / 2 - radius)
    assert hinge > 0  # some inputs are classified correctly: the term is exercised
    expected = np.mean(ce) + weight * hinge / BATCH
    got = loss_of("macer", model, q, x, y, {"m": m, "beta": beta})
    assert got == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("family, adversary, closed_form", [
    ("Gaussian", "l2", lambda rho, q: q.lam * norm.ppf(rho)),
    ("UniformCube", "l1", lambda rho, q: 2 * q.lam * (rho - 0.5)),
    ("Laplace", "l1", lambda rho, q: -q.lam * np.log(2 * (1 - rho))),
])
def test_macer_radius_term_is_the_certified_radius_of_the_soft_probability(family, adversary, closed_form):
    q = getattr(D, family)(D_IN, sigma=0.5)
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 0.5, 0.0]]])  # m = 1
    y = torch.tensor([0, 0, 0, 0])
    beta, gamma = 1.0, 8.0
    soft = torch.softmax(logits[0].double(), dim=1).numpy()
    correct = soft.argmax(axis=1) == 0
    rho = soft[:, 0]
    threshold = gamma * 0.5 / 2
    reference = wulff.certified_radius(q, rho, adversary)
    exact = np.where(rho > 0.5, closed_form(np.clip(rho, 0.5, None), q), 0.0)
    np.testing.assert_allclose(reference, exact, rtol=1e-6, atol=1e-9)
    expected = np.sum(np.where(correct, np.maximum(0, threshold - reference), 0.0)) / 4
    got = float(macer_radius_term(logits, y, q, adversary, beta, gamma))
    assert got == pytest.approx(expected, rel=1e-5)
    assert correct.sum() == 3 and (rho[correct] > 0.5).sum() == 2  # hinge at R = 0 and at R > 0


def test_smoothadv_is_the_soft_cross_entropy_at_the_attacked_point(batch):
    """One PGD step of size 2 eps in l2 lands on the sphere of radius eps along the gradient."""
    model, x, y = batch
    q = D.Gaussian(D_IN, sigma=0.5)
    m, eps = 3, 0.4
    noise = draws(q, m)

    def soft_ce(z):
        p = torch.stack([torch.softmax(model(z + noise[j]), dim=1) for j in range(m)]).mean(0)
        return -torch.log(p[torch.arange(BATCH), y])

    z = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(soft_ce(z).sum(), z)
    attacked = x + eps * grad / grad.norm(dim=1, keepdim=True)
    expected = float(soft_ce(attacked).mean().detach())
    got = loss_of("smoothadv", model, q, x, y, {"m": m, "steps": 1, "eps": eps}, epoch=0, epochs=1)
    assert got == pytest.approx(expected, rel=1e-5)
    assert got > float(soft_ce(x).mean().detach())  # the attack raised the loss


def test_smoothadv_warms_eps_up_over_the_first_half():
    objective = build_objective("smoothadv", {"eps": 1.0, "adversary": "l1"})
    assert [objective.eps_at(e, 10) for e in (0, 1, 4, 5, 9)] == [0.2, 0.4, 1.0, 1.0, 1.0]
    assert objective.eps_at(0, 1) == 1.0


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_gradients_flow_to_every_parameter(batch, name):
    model, x, y = batch
    q = D.Laplace(D_IN, sigma=0.5)
    params = {"steps": 2} if name == "smoothadv" else {}
    loss = build_objective(name, params, q).loss(model, q, x, y, torch.Generator().manual_seed(1))
    loss.backward()
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_defaults_adversaries_and_bad_parameters():
    assert natural_adversary(D.Gaussian(4, sigma=1)) == "l2"
    assert natural_adversary(D.UniformCube(4, sigma=1)) == "l1"
    assert natural_adversary(D.ExpInf(4, sigma=1)) == "linf"
    macer = build_objective("macer", {}, D.Laplace(4, sigma=1))
    assert macer.params == {"m": 16, "beta": 16.0, "gamma": 8.0, "weight": 12.0, "adversary": "l1"}
    assert build_objective("smoothadv", {}, D.Gaussian(4, sigma=1)).params == \
        {"m": 4, "steps": 20, "eps": 0.5, "adversary": "l2"}
    with pytest.raises(ValueError, match="objective must be one of"):
        build_objective("trades")
    with pytest.raises(ValueError, match="no parameter lam .*weight"):
        build_objective("stability", {"lam": 1})
    with pytest.raises(ValueError, match="m must be an integer"):
        build_objective("direct", {"m": "2.5"})
    with pytest.raises(ValueError, match="m must be > 0"):
        build_objective("direct", {"m": 0})
    with pytest.raises(ValueError, match="adversary must be one of"):
        build_objective("smoothadv", {"adversary": "l3"})
    with pytest.raises(ValueError, match="eps must be a finite number"):
        build_objective("smoothadv", {"adversary": "l2", "eps": "nan"})
    dssn = named_noise("DSSN", 4, lam=0.5, quantization=16)
    assert build_objective("noise", {}, dssn).name == "noise"
    with pytest.raises(ValueError, match="objective direct needs a noise distribution .*noise only"):
        build_objective("direct", {}, dssn)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train")


def fresh_mlp(info, classes=None, seed=0):
    torch.manual_seed(seed)
    return build_model("mlp", info.input_shape, classes or info.num_classes, info.mean, info.std)


def test_objective_and_its_parameters_are_part_of_the_checkpoint(digits, tmp_path):
    train_set, info = digits
    q = D.Gaussian(info.d, sigma=0.5)
    config = TrainConfig(epochs=2, batch_size=256, lr=0.05)
    ckpt = tmp_path / "c.pt"
    stability = build_objective("stability", {"weight": 3})
    train_smoothed(fresh_mlp(info), q, train_set, config, checkpoint=ckpt, progress=False, objective=stability,
                   max_steps=7, meta=training_meta("mlp", info, q))
    assert torch.load(ckpt, weights_only=True)["meta"]["objective"] == {"name": "stability",
                                                                         "params": {"weight": 3.0}}
    for other in (None, build_objective("stability"), build_objective("direct", {"m": 2})):
        with pytest.raises(UserError, match="objective: stability\\(weight=3\\) -> "):
            train_smoothed(fresh_mlp(info), q, train_set, config, checkpoint=ckpt, progress=False, objective=other,
                           meta=training_meta("mlp", info, q))
    logs = []
    history = train_smoothed(fresh_mlp(info), q, train_set, config, checkpoint=ckpt, progress=False,
                             objective=stability, meta=training_meta("mlp", info, q), log=logs.append)
    assert "resuming" in logs[0] and [h["epoch"] for h in history] == [1, 2]
    plain = tmp_path / "noise.pt"
    train_smoothed(fresh_mlp(info), q, train_set, config, checkpoint=plain, progress=False, max_steps=8,
                   objective=build_objective("noise"))
    assert "objective" not in torch.load(plain, weights_only=True)["meta"]  # noise checkpoints as before


@pytest.mark.parametrize("name", [n for n in OBJECTIVES if n != "noise"])
def test_every_objective_trains_under_bf16_autocast(digits, name):
    train_set, info = digits
    q = D.UniformCube(info.d, sigma=0.5)
    params = {"m": 2} if "m" in OBJECTIVES[name].defaults else {}
    params.update({"steps": 2} if name == "smoothadv" else {})
    history = train_smoothed(fresh_mlp(info), q, train_set, TrainConfig(epochs=1, batch_size=512, lr=0.05,
                                                                        autocast="bf16"),
                             progress=False, objective=build_objective(name, params, q))
    assert len(history) == 1 and math.isfinite(history[0]["loss"])


def _ddp_worker(rank: int, port: int, out: str) -> None:
    join_process_group(rank, port, 2)
    from wulff.train import setup, teardown

    env = setup("cpu")
    try:
        train_set, info = load_dataset("digits", "train")
        q = D.Laplace(info.d, sigma=0.5)
        flats = []
        for name in ("smoothadv", "consistency"):  # an attack on the bare module; m draws in one forward
            model = fresh_mlp(info, seed=rank)  # different initial weights: DDP broadcasts rank 0's
            params = {"m": 2, "steps": 2} if name == "smoothadv" else {"m": 2}
            train_smoothed(model, q, train_set, TrainConfig(epochs=1, batch_size=128, lr=0.05), env=env,
                           progress=False, objective=build_objective(name, params, q), max_steps=3)
            flats.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        torch.save(flats, os.path.join(out, f"rank{rank}.pt"))
    finally:
        teardown()


def test_objectives_train_in_sync_under_ddp(tmp_path):
    mp.spawn(_ddp_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    first, second = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_init_loads_weights_and_reinitialises_a_mismatched_head(digits, tmp_path):
    train_set, info = digits
    q = D.Gaussian(info.d, sigma=0.5)
    source = fresh_mlp(info, classes=5, seed=1)
    path = tmp_path / "five.pt"
    save_checkpoint(path, {"model": source.state_dict(), "meta": {}, "epoch": 1})
    model = fresh_mlp(info, seed=2)
    own = {k: v.clone() for k, v in model.state_dict().items()}
    lines = []
    fresh = init_from_checkpoint(model, path, log=lines.append)
    assert fresh == ["1.net.5.bias", "1.net.5.weight"]  # Flatten, Linear, ReLU, Linear, ReLU, Linear
    assert len(lines) == 1 and "5 classes there and 10 here: re-initialised" in lines[0]
    state = model.state_dict()
    for key, value in source.state_dict().items():
        expected = own[key] if key in fresh else value
        torch.testing.assert_close(state[key], expected, rtol=0, atol=0)
    history = train_smoothed(model, q, train_set, TrainConfig(epochs=1, batch_size=128, lr=0.05), progress=False)
    assert len(history) == 1
    cnn = build_model("cnn", info.input_shape, 10, info.mean, info.std)
    with pytest.raises(CheckpointError, match="same --model"):
        init_from_checkpoint(cnn, path)


def test_cli_train_with_an_objective_and_init(tmp_path, capsys):
    _, info = load_dataset("digits", "train")
    path = tmp_path / "five.pt"
    save_checkpoint(path, {"model": fresh_mlp(info, classes=5).state_dict(), "meta": {}, "epoch": 1})
    code, out, err = run_cli(capsys, "train", "--sigma", "0.5", "--epochs", "1", "--out", tmp_path / "run",
                             "--objective", "consistency", "--objective-param", "m=2", "--init", path,
                             "--no-progress", "--threads", "1")
    assert code == 0, err
    assert "re-initialised" in out and "(consistency)" in out
    meta = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["meta"]
    assert meta["objective"] == {"name": "consistency", "params": {"m": 2, "lambda": 10.0, "eta": 0.5}}
    code, out, err = run_cli(capsys, "train", "--sigma", "0.5", "--epochs", "1", "--out", tmp_path / "run",
                             "--no-progress", "--threads", "1")
    assert code == 2 and "objective: consistency(m=2, lambda=10, eta=0.5) -> None" in err
    code, out, err = run_cli(capsys, "train", "--sigma", "0.5", "--out", tmp_path / "x", "--objective", "direct",
                             "--objective-param", "k=1")
    assert code == 2 and "objective direct has no parameter k (its parameters: m)" in err
