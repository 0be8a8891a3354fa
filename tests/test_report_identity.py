"""``wulff report`` compares like with like (issue 24, items 4-7): distinct models are distinct rows
and every certify / attack header says which model it is; an attack is held only against
certificates of the same model, norm and inputs, and says so; stray files and invalid rows are named
in a warning and left out while the rest of the report is produced."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from tests.toys import run_cli
from wulff.certify import ResultWriter, read_results
from wulff.certify.attack_dataset import AttackWriter

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: objective specs as a checkpoint records them (wulff.train.objectives.Objective.spec)
CONSISTENCY = {"name": "consistency", "params": {"m": 2, "lambda": 10.0, "eta": 0.5}}
MACER = {"name": "macer", "params": {"m": 16, "beta": 16.0, "gamma": 8.0, "weight": 12.0, "adversary": "l2"}}


def identity(objective=None, architecture="mlp", data="digits"):
    return {"architecture": architecture, "training_data": data,
            "objective": objective or {"name": "noise", "params": {}}}


def certify_file(path, distribution, sigma, rows, *, adversaries=("l1",), sha="ab" * 32, model_identity=None,
                 **settings):
    """rows: (label, prediction, radius) with one radius for every adversary. Without
    ``model_identity`` the header is that of a file written before identities were recorded."""
    meta = {"distribution": distribution, "params": {}, "sigma": sigma, "adversaries": list(adversaries),
            "n": 1000, "alpha": 0.001, "dataset": "digits", "dataset_size": len(rows), "skip": 1, "d": 64,
            "indices_total": len(rows), "num_shards": 1, "split": "test", "model_sha256": sha, **settings}
    if model_identity is not None:
        meta["model_identity"] = model_identity
    with ResultWriter(path, meta, list(adversaries)) as writer:
        for i, (label, prediction, radius) in enumerate(rows):
            writer.write({"index": i, "label": label, "prediction": prediction, "rho_lower": 0.9,
                          "correct": int(label == prediction), "seconds": 0.01, "samples": 1064,
                          **{f"radius_{a}": radius for a in adversaries}})
    return meta


def attack_file(path, certify_meta, adversary, rows):
    """rows: (index, eps, prediction_attacked) for inputs of label 0 predicted 0 at x."""
    meta = {k: certify_meta[k] for k in ("distribution", "params", "model_sha256", "d", "dataset", "split")}
    meta.update(adversary=adversary, steps=5, samples=4, n=100, alpha=0.001, skip=1, seed=0, clamp=None,
                dataset_size=certify_meta["dataset_size"])
    if "model_identity" in certify_meta:
        meta["model_identity"] = certify_meta["model_identity"]
    with AttackWriter(path, meta) as writer:
        for index, eps, answer in rows:
            writer.write({"index": index, "label": 0, "eps": eps, "prediction": 0, "prediction_attacked": answer,
                          "robust": int(answer == 0), "seconds": 0.1})


def report(capsys, *args):
    return run_cli(capsys, "report", *args)


def table_rows(out: str) -> dict[str, list[str]]:
    """The certified-accuracy table's rows: label -> cells."""
    rows = {}
    for line in out.split("\n\n")[1].splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


# item 4: distinct models are distinct rows; every header records the model's identity

def test_models_trained_differently_are_distinct_labelled_rows(tmp_path, capsys):
    good = [(0, 0, 0.8)] * 4
    poor = [(0, 0, 0.3), (0, 0, 0.3), (0, 1, 0.0), (0, 1, 0.0)]
    certify_file(tmp_path / "cons.tsv", "Gaussian", 0.5, good, sha="01" * 32, model_identity=identity(CONSISTENCY))
    certify_file(tmp_path / "macer.tsv", "Gaussian", 0.5, poor, sha="02" * 32, model_identity=identity(MACER))
    # files written before identities were recorded keep reading, and keep their envelope over sigma
    certify_file(tmp_path / "old1.tsv", "Laplace", 0.25, poor, sha="03" * 32)
    certify_file(tmp_path / "old2.tsv", "Laplace", 0.5, good[:1] + poor[1:], sha="04" * 32)
    code, out, err = report(capsys, tmp_path, "--radii", "0", "0.5")
    assert code == 0, err
    rows = table_rows(out)
    assert len(rows) == 3, out
    consistency = [label for label in rows if label.startswith("Gaussian") and "consistency" in label]
    macer = [label for label in rows if label.startswith("Gaussian") and "macer" in label]
    laplace = [label for label in rows if label.startswith("Laplace")]
    assert len(consistency) == len(macer) == len(laplace) == 1, rows
    assert "m=16" in macer[0] and "lambda=10" in consistency[0]
    assert [c.strip("*") for c in rows[consistency[0]]] == ["100.0", "100.0"]
    assert [c.strip("*") for c in rows[macer[0]]] == ["50.0", "0.0"]  # not the maximum over both models
    assert [c.strip("*") for c in rows[laplace[0]]] == ["50.0", "25.0"]
    assert "not recorded" in laplace[0]


def test_two_models_of_one_noise_sigma_and_training_are_not_merged(tmp_path, capsys):
    good, poor = [(0, 0, 0.8)] * 4, [(0, 1, 0.0)] * 4
    certify_file(tmp_path / "first.tsv", "Gaussian", 0.5, good, sha="01" * 32, model_identity=identity())
    certify_file(tmp_path / "second.tsv", "Gaussian", 0.5, poor, sha="02" * 32, model_identity=identity())
    certify_file(tmp_path / "lap.tsv", "Laplace", 0.5, poor, sha="03" * 32, model_identity=identity())
    code, out, err = report(capsys, tmp_path, "--radii", "0", "0.5")
    assert code == 0, err
    assert list(table_rows(out)) == ["Laplace"]
    warned = [line for line in err.splitlines() if "first.tsv" in line and "second.tsv" in line]
    assert warned and "other model weights" in warned[0] and "010101010101" in warned[0]


def _tiny_checkpoint(path, objective):
    from wulff.distributions import Gaussian
    from wulff.train import build_model, load_dataset, training_meta

    _, info = load_dataset("digits", "test")
    torch.manual_seed(0)
    model = build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std)
    meta = {**training_meta("mlp", info, Gaussian(info.d, sigma=0.5)), "objective": objective}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "meta": meta, "epoch": 1}, path)


def _header(path) -> dict:
    first = path.read_text().splitlines()[0]
    return json.loads(first[first.index("{"):])


def test_certify_and_attack_headers_record_the_model_identity(tmp_path, capsys):
    ckpt = tmp_path / "macer" / "checkpoint.pt"
    _tiny_checkpoint(ckpt, MACER)
    common = ["--skip", "150", "--no-progress", "--threads", "1"]
    cert = tmp_path / "res" / "cert.tsv"
    code, _, err = run_cli(capsys, "certify", ckpt, "--out", cert, "--n0", "8", "--n", "50", "--adversaries",
                           "l2", "--max-inputs", "1", *common)
    assert code == 0, err
    attack = tmp_path / "res" / "attack.tsv"
    code, _, err = run_cli(capsys, "attack", ckpt, "--out", attack, "--eps", "0.5", "--steps", "1", "--samples",
                           "2", "--n", "50", *common)
    assert code == 0, err
    for path in (cert, attack):
        header = _header(path)
        assert header["model_identity"] == identity(MACER), path
        assert len(header["model_sha256"]) == 64
    # a file written before identities were recorded still resumes (and stays without one)
    lines = cert.read_text().splitlines(keepends=True)
    old = {k: v for k, v in _header(cert).items() if k != "model_identity"}
    cert.write_text("# wulff-certify " + json.dumps(old, sort_keys=True) + "\n" + "".join(lines[1:]))
    code, out, err = run_cli(capsys, "certify", ckpt, "--out", cert, "--n0", "8", "--n", "50", "--adversaries",
                             "l2", *common)
    assert code == 0, err
    assert len(read_results(cert)) == 3 and "model_identity" not in _header(cert)


# item 5: an attack is compared only with certificates of its own norm, model and inputs

def test_an_attack_without_a_comparable_certificate_says_nothing_comparable(tmp_path, capsys):
    rows = [(0, 0, 0.9)] * 4
    meta = certify_file(tmp_path / "c.tsv", "Gaussian", 0.5, rows, adversaries=("l1",), model_identity=identity())
    attack_file(tmp_path / "a.tsv", meta, "l2", [(i, 0.5, 0) for i in range(4)])
    code, out, err = report(capsys, tmp_path, "--adversary", "l1")
    assert code == 0, err
    assert "no certificate was broken" not in out
    assert "nothing comparable" in out and "no l2 radii" in out


def test_an_attack_is_compared_with_the_same_norm_model_and_inputs_and_says_so(tmp_path, capsys):
    rows = [(0, 0, 0.9)] * 4
    meta = certify_file(tmp_path / "c.tsv", "Gaussian", 0.5, rows, adversaries=("l2",), model_identity=identity())
    other = certify_file(tmp_path / "other" / "c.tsv", "Gaussian", 0.5, [(0, 0, 0.0)] * 4, adversaries=("l2",),
                         sha="cd" * 32, model_identity=identity())
    attack_file(tmp_path / "a.tsv", meta, "l2", [(i, 0.5, 0) for i in range(4)])
    attack_file(tmp_path / "other" / "a.tsv", other, "l2", [(i, 0.5, 1) for i in range(4)])
    code, out, err = report(capsys, tmp_path / "c.tsv", tmp_path / "a.tsv", tmp_path / "other" / "a.tsv",
                            "--adversary", "l2")
    assert code == 0, err
    compared = [line for line in out.splitlines() if "compared with" in line]
    assert len(compared) == 1 and "c.tsv" in compared[0] and "l2" in compared[0] and "4 inputs" in compared[0]
    # the other attack is of another model: never held against c.tsv's certificates
    assert "nothing comparable: no certification file read is of its model (weights cdcdcdcdcdcd" in out
    assert "ALARM" not in out + err
    assert "no certificate was broken" in out and "4 certified" in out


# item 6: stray files are named in a warning and left out

def test_stray_tsv_files_are_named_and_left_out(tmp_path, capsys):
    certify_file(tmp_path / "lap.tsv", "Laplace", 0.5, [(0, 0, 0.9), (0, 1, 0.0)])
    (tmp_path / "notes.tsv").write_text("sigma\tresult\n0.5\tgood\n")
    (tmp_path / "empty.tsv").write_bytes(b"")
    (tmp_path / "binary.tsv").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "badheader.tsv").write_text("# wulff-certify {not json\nindex\n")
    (tmp_path / "folder.tsv").mkdir()
    code, out, err = report(capsys, tmp_path, "--radii", "0")
    assert code == 0, err
    assert table_rows(out) == {"Laplace": ["**50.0**"]}
    for name in ("notes.tsv", "empty.tsv", "binary.tsv", "badheader.tsv", "folder.tsv"):
        warned = [line for line in err.splitlines() if name in line]
        assert len(warned) == 1 and "left out" in warned[0], (name, err)
    assert "Traceback" not in err


# item 7: invalid rows are named (file, line) and left out of every figure

def _replace_field(path, line_number, column, value):
    lines = path.read_text().splitlines(keepends=True)
    names = lines[1].rstrip("\n").split("\t")
    fields = lines[line_number - 1].rstrip("\n").split("\t")
    fields[names.index(column)] = value
    lines[line_number - 1] = "\t".join(fields) + "\n"
    path.write_text("".join(lines))


def test_rows_with_nan_radius_or_eps_are_named_and_left_out(tmp_path, capsys):
    radius, correct = [0.8, 0.6, 0.3, 0.2], [True, True, True, False]
    rows = [(0, 0 if c else 1, r) for r, c in zip(radius, correct)]
    meta = certify_file(tmp_path / "c.tsv", "Gaussian", 0.5, rows, adversaries=("l2",))
    _replace_field(tmp_path / "c.tsv", 3, "radius_l2", "nan")  # input 0: the only one an attack breaks
    attack_file(tmp_path / "a.tsv", meta, "l2", [(0, 0.5, 1), (1, 0.5, 0), (2, 0.5, 0), (1, 0.25, 0)])
    _replace_field(tmp_path / "a.tsv", 6, "eps", "nan")
    code, out, err = report(capsys, tmp_path, "--adversary", "l2", "--radii", "0", "0.5")
    assert code == 0, err
    assert not re.search(r"\bnan\b", out, re.IGNORECASE)
    warned = err.splitlines()
    assert any("c.tsv, line 3" in line and "radius_l2" in line for line in warned), err
    assert any("a.tsv, line 6" in line and "eps" in line for line in warned), err
    # figures over the three valid inputs: certified accuracy 2/3 at radius 0 and 1/3 above 0.5
    assert [c.strip("*") for c in table_rows(out)["Gaussian"]] == ["66.7", "33.3"]
    acr = np.mean(np.where(correct[1:], radius[1:], 0.0))
    assert f"| 3 | 66.7 | {acr:.3f} |" in out
    assert "at eps 0.25" not in out and "at eps nan" not in out
    assert "66.7 % at eps 0.5" in out  # input 0's answer is still counted; its certificate is not
    assert "c.tsv: left out" not in err  # the file itself stays in the table (it is not partial)

