"""``wulff experiment``: a tiny configuration runs end to end in seconds, resumes from its folder,
shares models between experiments, and the report's pieces say what the numbers say."""
from __future__ import annotations

import math

import numpy as np
import pytest
from toys import fake_cifar10, run_cli

from wulff.certify.analysis import Curve
from wulff.experiment import TABLE1_CIFAR10, capped, paper_comparison, radius_scale, verdict

TINY = ["--sigmas", "0.5", "--epochs", "1", "--skip", "90", "--n0", "20", "--n", "300", "--no-progress"]


@pytest.fixture(autouse=True)
def _cache(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("WULFF_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "wulff-cache"))


def test_table1_then_figure3_tiny_run_and_resume(capsys, tmp_path):
    code, out, err = run_cli(capsys, "experiment", "table1", "--out", tmp_path, *TINY)
    assert code == 0, err
    folder = tmp_path / "table1"
    assert sorted(p.name for p in folder.glob("*.tsv")) == [
        "Gaussian-sigma0.5.tsv", "Laplace-sigma0.5.tsv", "UniformCube-sigma0.5.tsv"]
    report = (folder / "report.md").read_text(encoding="utf-8")
    assert "| paper: UniformCube | 70 | 59 | 51 | 43 | 33 | 27 | 22 | 18 |" in report
    assert "| paper: Laplace | 61 | 39 | 24 | 16 | 11 | 7 | 4 | 3 |" in report
    scale = math.sqrt(64 / 3072)
    assert f"{4.0 * scale:.3g}" in report and "The paper found" in report and "Sweep check" in report
    assert (folder / "certified_accuracy_l1.png").read_bytes()[:4] == b"\x89PNG"
    checkpoints = {p: p.stat().st_mtime_ns for p in (tmp_path / "models").glob("*/checkpoint.pt")}
    results = {p: p.read_bytes() for p in folder.glob("*.tsv")}
    assert len(checkpoints) == 3

    # a rerun resumes: nothing is trained or certified again
    code, out, err = run_cli(capsys, "experiment", "table1", "--out", tmp_path, *TINY)
    assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == checkpoints
    assert {p: p.read_bytes() for p in results} == results

    # figure3 reuses table1's models for the noises they share
    code, out, err = run_cli(capsys, "experiment", "figure3", "--out", tmp_path, *TINY,
                             "--families", "Gaussian", "UniformCube")
    assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == checkpoints
    report3 = (tmp_path / "figure3" / "report.md").read_text(encoding="utf-8")
    assert "## figure3: l2" in report3 and "## figure3: linf" in report3
    assert (tmp_path / "figure3" / "certified_accuracy_linf.png").exists()


def test_bad_arguments_are_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "experiment", "table1", "--out", tmp_path, "--sigmas", "-1")
    assert code == 2 and "--sigmas" in err
    code, _, err = run_cli(capsys, "experiment", "table1", "--out", tmp_path, "--dataset", "cifar10",
                           "--no-progress")
    assert code == 2 and "--data-dir" in err and len(err.strip().splitlines()) == 1


def test_radius_scale_is_sqrt_of_the_dimension_ratio():
    assert radius_scale(3072) == 1.0
    assert radius_scale(64) == pytest.approx(1 / math.sqrt(48))


def _curve(name, accuracy, best_sigma, radii=(0.0, 1.0, 2.0)):
    return Curve(name, np.array(radii), np.array(accuracy), np.array(best_sigma))


def test_capped_names_the_noises_set_by_the_largest_sigma():
    curves = {"A": _curve("A", [0.9, 0.5, 0.1], [0.25, 1.0, 1.0]),
              "B": _curve("B", [0.9, 0.5, 0.0], [0.25, 0.5, 1.0])}  # B: 0 accuracy at the top: not capped
    lines = capped(curves, [0.25, 0.5, 1.0])
    assert len(lines) == 1 and lines[0].startswith("A:") and "radius 1, 2" in lines[0]
    assert capped(curves, [0.25, 0.5, 1.0, 2.0]) == []


def test_verdict_and_paper_comparison_read_the_curves():
    curves = {"UniformCube": _curve("UniformCube", [0.9, 0.6, 0.3], [0.25, 0.5, 1.0]),
              "Laplace": _curve("Laplace", [0.9, 0.4, 0.3], [0.25, 0.25, 0.5])}
    text = verdict(curves, "l1", "the cube wins")
    assert "0: UniformCube = Laplace; 1: UniformCube; 2: UniformCube = Laplace." in text
    assert "Agrees" not in text  # no expected leaders given
    text = verdict(curves, "l1", "Laplace wins", ("Laplace",))
    assert text.endswith("Agrees with the paper at radius 0, 2; disagrees at 1.")
    table = paper_comparison(
        {k: _curve(k, [0.9] + [0.5] * 8, [0.25] * 9, radii=[0.0, *TABLE1_CIFAR10.radii]) for k in curves},
        TABLE1_CIFAR10, 0.5, "l1")
    assert "| radius here (x 0.5) | 0.25 | 0.5 | 0.75 | 1 | 1.25 | 1.5 | 1.75 | 2 |" in table
    assert "| here: Laplace | 50.0 (sigma 0.25) |" in table


def test_the_same_command_runs_a_local_cifar10_folder(capsys, tmp_path):
    """CIFAR-10-shaped data through load_dataset's pickle reader: radii unscaled (d = 3072)."""
    folder = fake_cifar10(tmp_path)
    code, out, err = run_cli(capsys, "experiment", "table1", "--out", tmp_path / "out", "--dataset", "cifar10",
                             "--data-dir", folder, "--model", "cnn", "--families", "UniformCube",
                             "--sigmas", "1", "--epochs", "1", "--skip", "2", "--n0", "10", "--n", "100",
                             "--no-progress")
    assert code == 0, err
    assert "d = 3072" in out and "radii scaled by 1 from CIFAR-10" in out
    report = (tmp_path / "out" / "table1" / "report.md").read_text(encoding="utf-8")
    assert "| radius here (x 1) | 0.5 | 1 | 1.5 | 2 | 2.5 | 3 | 3.5 | 4 |" in report
