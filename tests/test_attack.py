"""PGD on the soft smoothed classifier (Smoothed.attack, wulff attack), resumable attack files, and
the report's ACR, clean accuracy, empirical robust accuracy and soundness alarm."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from toys import HalfSpace, run_cli

import wulff.distributions as D
from wulff.certify import ABSTAIN, ResultWriter, Smoothed
from wulff.certify.attack import ascent_direction, project
from wulff.certify.attack_dataset import AttackWriter, attack_dataset, read_attacks

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NORMS = {"l1": 1, "l2": 2, "linf": float("inf")}


def test_projection_onto_the_balls():
    eps = torch.tensor([[2.0], [1.0], [1.0]])
    v = torch.tensor([[3.0, 1.0, 0.0], [1.0, 1.0, 0.0], [-2.0, 1.0, 0.5]])
    torch.testing.assert_close(project(v, eps, "l1"), torch.tensor([[2.0, 0, 0], [0.5, 0.5, 0], [-1.0, 0, 0]]))
    inside = torch.tensor([[0.2, -0.3, 0.1]])
    torch.testing.assert_close(project(inside, torch.tensor([[1.0]]), "l1"), inside)
    torch.testing.assert_close(project(v[:1], eps[:1], "l2"), v[:1] * 2 / 10 ** 0.5)
    torch.testing.assert_close(project(v[2:], eps[2:], "linf"), torch.tensor([[-1.0, 1.0, 0.5]]))
    rng = torch.Generator().manual_seed(0)
    w = torch.randn(50, 7, generator=rng) * 3
    radius = torch.full((50, 1), 1.5)
    p = project(w, radius, "l1")
    assert torch.all(p.abs().sum(1) <= 1.5 + 1e-5)
    # the projection is the closest point: no random point of the ball is closer
    for _ in range(200):
        other = project(torch.randn(50, 7, generator=rng), radius, "l1")
        assert torch.all((w - p).norm(dim=1) <= (w - other).norm(dim=1) + 1e-5)


def test_l1_step_keeps_the_top_sixteenth_of_the_gradient():
    grad = torch.arange(1.0, 33.0).view(1, 32) * torch.tensor([1.0, -1.0] * 16)  # |g_i| = i + 1
    step = ascent_direction(grad, "l1")[0]
    kept = torch.nonzero(step).flatten().tolist()
    assert kept == [29, 30, 31]  # the coordinates at or above the 30th smallest magnitude
    assert float(step.abs().sum()) == pytest.approx(1.0)
    assert torch.equal(step[kept].sign(), grad[0, kept].sign())


@pytest.mark.parametrize("adversary", ["l1", "l2", "linf"])
@pytest.mark.parametrize("family", ["Gaussian", "Laplace"])
def test_attack_on_a_half_space_fails_below_the_robust_radius_and_succeeds_above(adversary, family):
    """The smoothed half-space x_1 < b (symmetric noise) is the half-space itself: its exact robust
    radius at x is b - x_1 in every norm."""
    d, b = 5, 1.0
    q = getattr(D, family)(d, sigma=0.5)
    smoothed = Smoothed(HalfSpace(b), q, 2, seed=0)
    x = torch.tensor([0.0, 0.3, -0.2, 0.5, 0.1])
    for eps in (0.5, 0.95):
        attacked = smoothed.attack(x, 0, eps, adversary, steps=20, samples=16)
        assert float((attacked - x).norm(p=NORMS[adversary])) <= eps * (1 + 1e-5)
        assert float(attacked[0]) >= 0.9 * eps  # it did push toward the boundary, which it cannot cross
        assert smoothed.predict(attacked, 2000, 0.001, 2000) in (0, ABSTAIN)
    attacked = smoothed.attack(x, 0, 1.4, adversary, steps=20, samples=16)
    assert float(attacked[0]) > b
    assert smoothed.predict(attacked, 2000, 0.001, 2000) == 1


def test_attack_checks_its_arguments():
    smoothed = Smoothed(HalfSpace(1.0), D.Gaussian(3, sigma=0.5), 2)
    with pytest.raises(ValueError, match="eps must be finite and >= 0"):
        smoothed.attack(torch.zeros(3), 0, -1.0)
    with pytest.raises(ValueError, match="adversary"):
        smoothed.attack(torch.zeros(3), 0, 1.0, "l3")
    torch.testing.assert_close(smoothed.attack(torch.zeros(3), 0, 0.0), torch.zeros(3))


def _dataset(count=6):
    return [(torch.tensor([0.1 * i, 0.0, 0.0]), 0) for i in range(count)]


def test_attack_rows_resume(tmp_path):
    smoothed = Smoothed(HalfSpace(1.0), D.Gaussian(3, sigma=0.5), 2)
    out = tmp_path / "a.tsv"
    options = dict(adversary="l2", steps=5, samples=4, n=200, alpha=0.01, batch_size=200, progress=False)
    first = attack_dataset(smoothed, _dataset(), out, eps=[0.2, 2.0], max_inputs=2, **options)
    assert first.columns["index"].tolist() == [0, 0, 1, 1]
    again = attack_dataset(smoothed, _dataset(), out, eps=[0.2, 2.0], **options)
    assert sorted(zip(again.columns["index"].tolist(), again.columns["eps"].tolist())) == \
        [(i, e) for i in range(6) for e in (0.2, 2.0)]
    more = attack_dataset(smoothed, _dataset(), out, eps=[0.2, 0.5, 2.0], **options)  # one new eps: 6 new rows
    assert len(more) == 18
    straight = attack_dataset(smoothed, _dataset(), tmp_path / "b.tsv", eps=[0.2, 0.5, 2.0], **options)

    def rows(results):
        cols = results.columns
        return sorted(zip(cols["index"].tolist(), cols["eps"].tolist(), cols["prediction"].tolist(),
                          cols["prediction_attacked"].tolist()))

    assert rows(more) == rows(straight)  # resuming (and adding an eps) changes no answer
    robust = dict(zip(zip(more.columns["index"].tolist(), more.columns["eps"].tolist()),
                      more.columns["robust"].tolist()))
    assert robust[(0, 0.2)] == 1 and robust[(5, 2.0)] == 0  # 0.2 < 1 - x_1 = 1; 2.0 > 0.5
    with pytest.raises(ValueError, match="other settings .*steps"):
        attack_dataset(smoothed, _dataset(), out, eps=[0.2], **{**options, "steps": 6})
    with open(out, "a") as fh:
        fh.write("6\t0\t0.2")  # a torn row, as after a crash
    assert len(read_attacks(out)) == 18


def _certification_file(path, radius, correct, meta):
    with ResultWriter(path, meta, ["l2"]) as writer:
        for i, (r, c) in enumerate(zip(radius, correct)):
            writer.write({"index": i, "label": 0, "prediction": 0 if c else 1, "rho_lower": 0.9, "radius_l2": r,
                          "correct": int(c), "seconds": 0.1, "samples": 100})


def test_report_prints_acr_clean_accuracy_robust_accuracy_and_a_soundness_alarm(tmp_path, capsys):
    meta = {"distribution": "Gaussian", "params": {}, "model_sha256": "ab" * 32, "d": 3, "lam": 0.5,
            "sigma": 0.5, "n0": 10, "n": 90, "alpha": 0.001, "adversaries": ["l2"], "skip": 1, "seed": 0,
            "dataset": "digits", "dataset_size": 4, "indices_total": 4, "shard": 0, "num_shards": 1,
            "split": "test"}
    radius, correct = [0.8, 0.3, 0.0, 1.2], [True, True, False, True]
    _certification_file(tmp_path / "c.tsv", radius, correct, meta)
    attack_meta = {k: meta[k] for k in ("distribution", "params", "model_sha256", "d", "lam", "dataset", "split")}
    attack_meta.update(adversary="l2", steps=5, samples=4, n=100, alpha=0.001, skip=1, seed=0, clamp=None,
                       dataset_size=4)
    with AttackWriter(tmp_path / "a.tsv", attack_meta) as writer:
        # eps 0.5: input 0 (certified at 0.8) broken -> alarm; input 1 (radius 0.3 < eps) broken: no alarm;
        # input 3 abstains at the attacked point: no alarm
        for index, answer in ((0, 1), (1, 1), (2, 1), (3, ABSTAIN)):
            writer.write({"index": index, "label": 0, "eps": 0.5, "prediction": 0 if correct[index] else 1,
                          "prediction_attacked": answer, "robust": 0, "seconds": 0.1})
        for index in range(4):
            writer.write({"index": index, "label": 0, "eps": 0.1, "prediction": 0 if correct[index] else 1,
                          "prediction_attacked": 0 if correct[index] else 1, "robust": int(correct[index]),
                          "seconds": 0.1})
    code, out, err = run_cli(capsys, "report", tmp_path, "--adversary", "l2")
    assert code == 0, err
    acr = np.mean(np.where(correct, radius, 0.0))
    assert f"| 4 | 75.0 | {acr:.3f} |" in out and "Xia et al., 2024" in out
    assert "75.0 % at eps 0.1, 0.0 % at eps 0.5" in out
    assert "SOUNDNESS ALARM: at eps = 0.5, 1 of 2 inputs certified correct" in err
    assert "(indices [0])" in out
    code, out, err = run_cli(capsys, "report", tmp_path / "c.tsv", "--adversary", "l2")
    assert code == 0 and "ALARM" not in out + err


def test_cli_attack_then_report(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--sigma", "0.5", "--epochs", "2", "--out", tmp_path / "run",
                           "--no-progress", "--threads", "1")
    assert code == 0, err
    ckpt = tmp_path / "run" / "checkpoint.pt"
    args = ["attack", ckpt, "--out", tmp_path / "res" / "attack.tsv", "--eps", "0.25", "1.0", "--steps", "3",
            "--samples", "4", "--n", "200", "--skip", "90", "--no-progress", "--threads", "1"]
    code, out, err = run_cli(capsys, *args, "--max-inputs", "2")
    assert code == 0, err
    assert "4 rows (l2)" in out
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "10 rows (l2); empirical robust accuracy" in out
    code, out, err = run_cli(capsys, "certify", ckpt, "--out", tmp_path / "res" / "cert.tsv", "--n0", "16",
                             "--n", "200", "--skip", "90", "--no-progress", "--threads", "1")
    assert code == 0, err
    code, out, err = run_cli(capsys, "report", tmp_path / "res", "--adversary", "l2")
    assert code == 0, err
    assert "ACR (l2)" in out and "attack.tsv (l2, 3 PGD steps, 4 draws per step)" in out


def test_the_objectives_example_runs():
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(root / "examples" / "objectives_digits.py")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("input ") == 3 and "attacked at l1 eps" in done.stdout
