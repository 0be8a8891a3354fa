"""Results from elsewhere (issue 27, items 5 and 6): ``wulff report`` reads a Cohen et al. (2019) certify
log and an rs4a result folder of Yang et al. (2020), each its own row with what it records; ``--export
cohen`` writes wulff results in Cohen's format and reads back; ``wulff certify --compare-with`` puts a
new certificate beside an old one per input and counts what grew, shrank and changed class."""
from __future__ import annotations

import datetime
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from toys import run_cli, train_digits_mlp

import wulff.distributions as D
from wulff.certify import ResultWriter, read_results
from wulff.certify.foreign import printed_lower_bound, read_cohen_log, read_rs4a_folder
from wulff.certify.results import Results
from wulff.certify.revisit import compare_results

pytestmark = pytest.mark.usefixtures("one_torch_thread")

README = Path(__file__).resolve().parents[1] / "README.md"


# -- the two formats, written as their codebases write them -------------------------------------------
def write_cohen_log(path: Path, rows) -> Path:
    """rows: (idx, label, predict, radius); as locuslab/smoothing code/certify.py prints them."""
    lines = ["idx\tlabel\tpredict\tradius\tcorrect\ttime"]
    for idx, label, prediction, radius in rows:
        elapsed = str(datetime.timedelta(seconds=1.5 + idx))
        lines.append(f"{idx}\t{label}\t{prediction}\t{radius:.3}\t{int(prediction == label)}\t{elapsed}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_rs4a_folder(folder: Path, labels, predictions, prob_lb, radii: dict, classes: int = 10) -> Path:
    """As tonyduan/rs4a src/test.py saves them: float labels, per-input class frequencies in preds."""
    folder.mkdir(parents=True, exist_ok=True)
    preds = np.zeros((len(labels), classes))
    preds[np.arange(len(labels)), predictions] = 0.9
    arrays = {"labels": np.asarray(labels, dtype=np.float64), "preds": preds,
              "prob_lb": np.asarray(prob_lb, dtype=np.float64), "preds_nll": np.zeros(len(labels))}
    arrays.update({f"radius_{norm}": np.asarray(values, dtype=np.float64) for norm, values in radii.items()})
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    return folder


def write_wulff_results(path: Path, rows, adversaries=("l2",)) -> Path:
    """rows: (index, label, prediction, radius against every adversary); a complete test-split file."""
    meta = {"distribution": "Gaussian", "params": {}, "sigma": 0.25, "adversaries": list(adversaries),
            "n": 1000, "alpha": 0.001, "dataset_size": 100, "skip": 1, "indices_total": len(rows),
            "num_shards": 1, "split": "test"}
    with ResultWriter(path, meta, adversaries) as writer:
        for index, label, prediction, radius in rows:
            writer.write({"index": index, "label": label, "prediction": prediction, "rho_lower": 0.9,
                          **{f"radius_{a}": radius for a in adversaries}, "correct": int(label == prediction),
                          "seconds": 0.25 + index, "samples": 1064})
    return path


def table_row(text: str, name: str) -> list[float]:
    """The certified accuracies (%) of the markdown table row whose label starts with ``name``."""
    line = next(line for line in text.splitlines() if line.startswith(f"| {name}"))
    return [float(cell.strip("* ")) for cell in line.split("|")[2:-1]]


def expected_accuracy(rows, radii) -> list[float]:
    """Certified accuracy (%) from the true (label, prediction, radius) of each input: correct with a
    radius above r (any radius at r = 0)."""
    return [100 * sum(label == prediction and (r == 0 or radius > r) for label, prediction, radius in rows)
            / len(rows) for r in radii]


#: (idx, label, predict, true radius): the true radii are away from the table's radii by more than the
#: 3-digit rounding of Cohen's log; -1 is an abstention (radius 0, as Cohen's Smooth.certify returns)
COHEN_ROWS = [(0, 3, 3, 0.51234), (20, 1, 1, 1.2349), (40, 2, -1, 0.0), (60, 5, 5, 0.0732), (80, 4, 7, 0.3),
              (100, 0, 0, 0.99971)]
RADII = [0.0, 0.25, 0.5, 1.0, 1.25]


def test_wulff_report_tabulates_a_cohen_log_as_its_own_row(tmp_path, capsys):
    log = write_cohen_log(tmp_path / "noise_0.25" / "test" / "sigma_0.25", COHEN_ROWS)
    code, out, err = run_cli(capsys, "report", log, "--adversary", "l2", "--radii", *RADII)
    assert code == 0, err
    truth = [(label, prediction, radius) for _, label, prediction, radius in COHEN_ROWS]
    assert table_row(out, f"{log} [Cohen log]") == pytest.approx(expected_accuracy(truth, RADII), abs=0.05)
    line = next(line for line in out.splitlines() if line.startswith(f"- {log}: "))
    assert "sigma not recorded, n not recorded, alpha not recorded, 6 inputs (indices 0 .. 100)" in line
    assert "Gaussian" in line and "l2" in line
    # against l1 it has no radii: named, left out, never a wrong row
    code, _, err = run_cli(capsys, "report", log, "--adversary", "l1")
    assert code == 2 and f"{log}: left out: it has no l1 radii" in err and "--adversary l2" in err


def test_a_cohen_radius_is_read_as_the_least_value_it_can_stand_for():
    rng = np.random.default_rng(0)
    truth = np.exp(rng.uniform(np.log(1e-4), np.log(50.0), 3000))
    for value in truth.tolist() + [0.5, 0.9995, 1.0, 0.00049999]:
        printed = f"{value:.3}"  # Cohen's format: may round up
        lower = printed_lower_bound(printed, 3)
        assert lower <= value, (value, printed, lower)
        assert lower >= float(printed) * (1 - 1e-2)
    assert printed_lower_bound("0.5", 3) == pytest.approx(0.4995)  # "{:.3}" drops trailing zeros


def test_wulff_report_finds_an_rs4a_folder_and_reads_a_bound_of_one_half_as_no_certificate(tmp_path, capsys):
    labels, predictions = [0, 1, 2, 3, 4], [0, 1, 2, 9, 4]
    prob_lb = [0.9, 0.45, 0.8, 0.7, 0.95]  # input 1: bound below 1/2 certifies nothing (its radius is ignored)
    radius_l1 = [1.1, 0.7, 0.6, 0.3, 0.26]
    folder = write_rs4a_folder(tmp_path / "results" / "cifar_laplace_0.5", labels, predictions, prob_lb,
                               {"l1": radius_l1, "l2": np.array(radius_l1) / 2, "linf": np.array(radius_l1) / 100})
    code, out, err = run_cli(capsys, "report", tmp_path / "results", "--radii", *RADII)  # found below a folder
    assert code == 0, err
    truth = [(label, prediction if bound > 0.5 else -1, radius)
             for label, prediction, bound, radius in zip(labels, predictions, prob_lb, radius_l1)]
    assert table_row(out, f"{folder} [rs4a folder]") == pytest.approx(expected_accuracy(truth, RADII), abs=0.05)
    line = next(line for line in out.splitlines() if line.startswith(f"- {folder}: "))
    assert "noise not recorded, sigma not recorded, n not recorded, alpha not recorded, 5 inputs" in line
    run = read_rs4a_folder(folder, skip=20)
    assert run.columns["index"].tolist() == [0, 20, 40, 60, 80]
    assert run.columns["prediction"].tolist() == [0, -1, 2, 9, 4]


def test_wulff_report_shows_results_from_elsewhere_beside_wulff_files(tmp_path, capsys):
    own = write_wulff_results(tmp_path / "gaussian.tsv", [(i, i % 3, i % 3, 0.2 * i) for i in range(6)])
    log = write_cohen_log(tmp_path / "sigma_0.25", COHEN_ROWS)
    code, out, err = run_cli(capsys, "report", own, log, "--adversary", "l2", "--radii", *RADII)
    assert code == 0, err
    assert table_row(out, "Gaussian") == pytest.approx(
        expected_accuracy([(i % 3, i % 3, 0.2 * i) for i in range(6)], RADII), abs=0.05)
    assert len(table_row(out, f"{log} [Cohen log]")) == len(RADII)
    assert "n = 1000, alpha = 0.001, 6 inputs per file (1 result file)" in out  # the wulff file's own line


def test_export_cohen_writes_cohens_format_and_reads_back_exactly(tmp_path, capsys):
    rows = [(0, 3, 3, 0.123456789012345), (7, 1, 1, 2.0), (3, 2, -1, 0.0), (5, 4, 0, 0.75)]
    source = write_wulff_results(tmp_path / "runs" / "gaussian.tsv", rows, adversaries=("l1", "l2"))
    code, out, err = run_cli(capsys, "report", tmp_path / "runs", "--export", "cohen", "--export-dir",
                             tmp_path / "cohen")
    assert code == 0, err
    exported = tmp_path / "cohen" / "gaussian.cohen.log"
    assert f"wrote {exported}" in out
    lines = exported.read_text().splitlines()
    assert lines[0] == "idx\tlabel\tpredict\tradius\tcorrect\ttime"
    ordered = sorted(rows)
    for line, (index, label, prediction, radius) in zip(lines[1:], ordered):
        fields = line.split("\t")
        assert [int(f) for f in fields[:3]] == [index, label, prediction]
        assert int(fields[4]) == int(label == prediction)
        assert float(fields[3]) == radius
        assert re.fullmatch(r"\d+:\d\d:\d\d(\.\d+)?", fields[5])  # str(datetime.timedelta)
    back = read_cohen_log(exported)
    original = read_results(source)
    order = np.argsort(original.columns["index"])
    for column in ("index", "label", "prediction", "correct", "radius_l2"):
        assert back.columns[column].tolist() == original.columns[column][order].tolist(), column
    assert back.columns["seconds"] == pytest.approx(original.columns["seconds"][order])
    # an existing file is never overwritten
    code, _, err = run_cli(capsys, "report", tmp_path / "runs", "--export", "cohen", "--export-dir",
                           tmp_path / "cohen")
    assert code == 2 and "exists already" in err and exported.read_text().splitlines() == lines
    code, _, err = run_cli(capsys, "report", tmp_path / "runs", "--export-dir", tmp_path / "x")
    assert code == 2 and "add --export cohen" in err


def test_export_cohen_refuses_shared_targets_before_writing_and_names_files_it_cannot_export(tmp_path, capsys):
    rows = [(0, 1, 1, 0.5), (1, 2, 2, 0.25)]
    write_wulff_results(tmp_path / "runs" / "a" / "certify.tsv", rows)
    write_wulff_results(tmp_path / "runs" / "b" / "certify.tsv", rows)
    code, _, err = run_cli(capsys, "report", tmp_path / "runs", "--export", "cohen", "--export-dir",
                           tmp_path / "out")
    assert code == 2 and "would be written for both" in err and not (tmp_path / "out").exists()
    write_wulff_results(tmp_path / "runs" / "c" / "l1only.tsv", rows, adversaries=("l1",))
    code, out, err = run_cli(capsys, "report", tmp_path / "runs", "--export", "cohen")  # beside each file
    assert code == 0, err
    assert "l1only.tsv: not exported: it has no l2 radii" in err
    assert sorted(p.relative_to(tmp_path / "runs").as_posix() for p in (tmp_path / "runs").rglob("*.cohen.log")) \
        == ["a/certify.cohen.log", "b/certify.cohen.log"]


class _Planted:
    """Pickling this runs ``Path.touch`` on load: what a planted result file would do if unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_foreign_results_are_read_as_data_and_bounded(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "ran"
    folder = write_rs4a_folder(tmp_path / "planted", [0, 1], [0, 1], [0.9, 0.9], {n: [0.1, 0.2] for n in
                                                                                 ("l1", "l2", "linf")})
    np.save(folder / "preds.npy", np.array([_Planted(marker), 1], dtype=object), allow_pickle=True)
    code, _, err = run_cli(capsys, "report", folder)
    assert code == 2 and "preds.npy: not a numeric numpy array" in err and not marker.exists()

    log = write_cohen_log(tmp_path / "evil", COHEN_ROWS)
    log.write_text(log.read_text() + "7\t1\t1\t__import__('os').system('touch ran')\t1\t0:00:01\n")
    code, _, err = run_cli(capsys, "report", log, "--adversary", "l2")
    assert code == 2 and f"{log}: left out: line 8: not a row of a Cohen certify log" in err
    assert not marker.exists()

    log.write_text(log.read_text().replace("\n0\t3\t3\t", "\n0\t3\t4\t", 1))  # correct = 1, yet 4 != 3
    with pytest.raises(ValueError, match=r"line 2: .*correct is 1 but predict 4 != label 3"):
        read_cohen_log(log)

    for row, why in (("9" * 30 + "\t1\t1\t0.5\t1\t0:00:01", "idx and label must lie in"),
                     ("8\t1\t1\t1e999999\t1\t0:00:01", "not a non-negative finite number"),
                     ("8\t1\t1\t-0.5\t1\t0:00:01", "not a non-negative finite number"),
                     ("8\t1\t1\t0.5\t1\tyesterday", "not a time as H:MM:SS")):
        write_cohen_log(log, COHEN_ROWS)
        log.write_text(log.read_text() + row + "\n")
        with pytest.raises(ValueError, match=f"line 8: not a row of a Cohen certify log .*{why}"):
            read_cohen_log(log)

    write_cohen_log(log, COHEN_ROWS)
    monkeypatch.setattr("wulff.certify.foreign.MAX_TEXT_BYTES", 64)
    with pytest.raises(ValueError, match=r"more than the 64 a result log may have"):
        read_cohen_log(log)

    bad = write_rs4a_folder(tmp_path / "bad", [0.5, 1], [0, 1], [0.9, 0.9], {n: [0.1, 0.2] for n in
                                                                            ("l1", "l2", "linf")})
    with pytest.raises(ValueError, match=r"labels.npy must hold class numbers"):
        read_rs4a_folder(bad)
    np.save(bad / "labels.npy", np.array([1e30, 1.0]))
    with pytest.raises(ValueError, match=r"labels.npy must hold class numbers"):
        read_rs4a_folder(bad)
    np.save(bad / "radius_l2.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"radius_l2.npy: shape \(3,\) does not fit 2 inputs"):
        read_rs4a_folder(bad)


# -- --compare-with -------------------------------------------------------------------------------
def _results(rows, adversaries=("l1", "l2")) -> Results:
    """rows: (index, label, prediction, radius)."""
    index, label, prediction, radius = (np.array(c) for c in zip(*rows))
    columns = {"index": index.astype(np.int64), "label": label.astype(np.int64),
               "prediction": prediction.astype(np.int64), "correct": (label == prediction).astype(np.int64),
               **{f"radius_{a}": radius.astype(np.float64) for a in adversaries}}
    return Results({"adversaries": list(adversaries), "model_sha256": "a" * 64}, columns, "old.tsv")


def test_compare_counts_grew_shrank_same_and_changed_class_on_constructed_inputs(tmp_path):
    old = _results([(0, 1, 1, 0.5), (1, 2, 2, 0.5), (2, 3, 3, 0.5), (3, 4, 4, 0.5), (4, 5, -1, 0.0),
                    (5, 6, 6, 0.5), (6, 7, 7, 0.5)])
    new = _results([(0, 1, 1, 0.75), (1, 2, 2, 0.25), (2, 3, 3, 0.5), (3, 4, 0, 0.5), (4, 5, 5, 0.1),
                    (5, 9, 9, 0.5), (8, 0, 0, 0.5)])
    comparison = compare_results(old, new)
    assert comparison.adversary == "l1"
    assert comparison.counts() == {"grew": 1, "shrank": 1, "same": 1, "changed class": 2}
    assert comparison.other_label == [5] and comparison.only_old == 1 and comparison.only_new == 1
    summary = comparison.summary("old.tsv")
    assert "5 inputs in both: radius grew on 1, shrank on 1, same on 1; changed class on 2" in summary
    assert "1 inputs have another label in old.tsv (indices 5)" in summary

    # against a Cohen log: l2, and the same radius to the log's 3 digits is the same
    log = read_cohen_log(write_cohen_log(tmp_path / "log", [(0, 1, 1, 0.4), (1, 2, 2, 0.25001), (2, 3, 3, 0.6)]))
    comparison = compare_results(log, _results([(0, 1, 1, 0.41), (1, 2, 2, 0.2500049), (2, 3, 3, 0.59)]))
    assert comparison.adversary == "l2"
    assert comparison.counts() == {"grew": 1, "shrank": 1, "same": 1, "changed class": 0}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return train_digits_mlp(tmp_path_factory.mktemp("gaussian"), D.Gaussian(64, sigma=0.25))


CERTIFY = ("--skip", "90", "--n0", "8", "--n", "200", "--batch-size", "200", "--no-progress")


def test_wulff_certify_compare_with_a_wulff_file_a_cohen_log_and_an_rs4a_folder(checkpoint, tmp_path, capsys):
    first = tmp_path / "first.tsv"
    assert run_cli(capsys, "certify", checkpoint, "--out", first, *CERTIFY)[0] == 0
    second = tmp_path / "second.tsv"
    code, out, err = run_cli(capsys, "certify", checkpoint, "--out", second, *CERTIFY, "--compare-with", first)
    assert code == 0, err
    assert "5 inputs in both: radius grew on 0, shrank on 0, same on 5; changed class on 0" in out  # same seed
    assert (tmp_path / "second.compare.md").read_text().count("| same |") == 5
    new = read_results(second)
    index, label, prediction = (new.columns[c].tolist() for c in ("index", "label", "prediction"))
    l2, l1 = new.columns["radius_l2"].tolist(), new.columns["radius_l1"].tolist()

    # a Cohen log: input 0 larger (shrank), input 90 another class, input 180 the same to 3 digits, and
    # an input this run does not have
    log = write_cohen_log(tmp_path / "sigma_0.25", [(0, label[0], prediction[0], l2[0] + 0.5),
                                                    (90, label[1], (prediction[1] + 1) % 10, l2[1]),
                                                    (180, label[2], prediction[2], l2[2]),
                                                    (9000, 0, 0, 0.5)])
    third = tmp_path / "third.tsv"
    code, out, err = run_cli(capsys, "certify", checkpoint, "--out", third, *CERTIFY, "--compare-with", log)
    assert code == 0, err
    assert "3 inputs in both: radius grew on 0, shrank on 1, same on 1; changed class on 1" in out
    assert "2 inputs only in the new run, 1 only in" in out and "taken on trust" in out

    # an rs4a folder: row i is input i x --skip; every l1 radius 1 below the new one where it certifies
    certifies = [p != -1 for p in prediction]
    folder = write_rs4a_folder(tmp_path / "rs4a", label, [max(p, 0) for p in prediction],
                               [0.9 if c else 0.3 for c in certifies],
                               {"l1": [max(r - 1, 0.0) for r in l1], "l2": l2, "linf": l2})
    fourth = tmp_path / "fourth.tsv"
    code, out, err = run_cli(capsys, "certify", checkpoint, "--out", fourth, *CERTIFY, "--compare-with", folder)
    assert code == 0, err
    grew = sum(c and r > 0 for c, r in zip(certifies, l1))  # a certified input has a radius > 0
    same = len(index) - grew
    assert (f"{len(index)} inputs in both: radius grew on {grew}, shrank on 0, same on {same}; changed class "
            "on 0") in out

    # a wrong file fails before any work
    code, _, err = run_cli(capsys, "certify", checkpoint, "--out", tmp_path / "fifth.tsv", *CERTIFY,
                           "--compare-with", tmp_path / "missing.tsv")
    assert code == 2 and "--compare-with: no result file or folder at" in err
    assert not (tmp_path / "fifth.tsv").exists()


# -- the README's commands ------------------------------------------------------------------------
def readme_commands(marker: str) -> list[list[str]]:
    """The `wulff ...` commands (continuation lines joined, comments dropped) of the README's bash
    blocks that contain ``marker``."""
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S) if marker in b]
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "wulff":
                commands.append(words[1:])
    return commands


def test_readme_results_from_elsewhere_commands_run_on_tiny_fakes(checkpoint, tmp_path, capsys, monkeypatch):
    commands = readme_commands("--compare-with")
    assert any("--export" in c for c in commands) and any(c[0] == "report" for c in commands), commands
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "gaussian-0.25").mkdir(parents=True)
    (tmp_path / "runs" / "gaussian-0.25" / "checkpoint.pt").write_bytes(checkpoint.read_bytes())
    write_cohen_log(tmp_path / "smoothing" / "noise_0.25" / "test" / "sigma_0.25",
                    [(i, i % 10, i % 10, 0.1 * (i % 7)) for i in range(0, 450, 20)])
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 23)
    write_rs4a_folder(tmp_path / "rs4a" / "cifar_gaussian_0.25", labels, labels, rng.uniform(0.4, 1.0, 23),
                      {n: rng.uniform(0, 1, 23) for n in ("l1", "l2", "linf")})
    for words in commands:
        code, out, err = run_cli(capsys, *words)
        assert code == 0, (words, err)
