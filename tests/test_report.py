"""Analysis of result files (certified accuracy, upper envelope over sigma, Table 1, plot) and the
report / merge / demo commands."""
from __future__ import annotations

import numpy as np
import pytest

from wulff.certify import ABSTAIN, ResultWriter, certified_accuracy, markdown_table, read_results, upper_envelopes
from wulff.certify.analysis import plot_curves, radius_grid
from wulff.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write(path, distribution, sigma, rows, total=None, **settings):
    """rows: (label, prediction, radius); rho_lower is irrelevant to the analysis. The header says the
    run has ``total`` inputs (default: as many as rows, a complete file); ``settings`` override it."""
    total = len(rows) if total is None else total
    meta = {"distribution": distribution, "params": {}, "sigma": sigma, "adversaries": ["l1"], "n": 1000,
            "alpha": 0.001, "dataset_size": total, "skip": 1, "indices_total": total, "num_shards": 1,
            "split": "test", **settings}
    with ResultWriter(path, meta, ["l1"]) as w:
        for i, (label, pred, radius) in enumerate(rows):
            w.write({"index": i, "label": label, "prediction": pred, "rho_lower": 0.9, "radius_l1": radius,
                     "correct": int(label == pred), "seconds": 0.01, "samples": 1064})
    return read_results(path)


@pytest.fixture
def runs(tmp_path):
    a = write(tmp_path / "lap1.tsv", "Laplace", 0.25, [(0, 0, 0.1), (1, 1, 0.5), (2, 0, 0.9), (3, ABSTAIN, 0.0)])
    b = write(tmp_path / "lap2.tsv", "Laplace", 0.5, [(0, 0, 0.6), (1, 2, 0.7), (2, 2, 0.2), (3, 3, 0.05)])
    c = write(tmp_path / "uni.tsv", "UniformCube", 0.5, [(0, 0, 0.3), (1, 1, 0.3), (2, 2, 0.3), (3, 0, 0.3)])
    return [a, b, c]


def test_certified_accuracy_counts_correct_inputs_with_radius_above_r(runs):
    a, b, _ = runs
    # a: correct inputs have radii 0.1 and 0.5 (input 2 is wrong, input 3 abstained)
    np.testing.assert_allclose(certified_accuracy(a, [0, 0.05, 0.1, 0.3, 0.5, 0.6], "l1"),
                               [0.5, 0.5, 0.25, 0.25, 0.0, 0.0])
    np.testing.assert_allclose(certified_accuracy(b, [0, 0.1, 0.6], "l1"), [0.75, 0.5, 0.0])


def test_upper_envelope_takes_the_best_sigma_at_each_radius(runs):
    curves = upper_envelopes(runs, [0, 0.1, 0.4, 0.55], "l1")
    assert set(curves) == {"Laplace", "UniformCube"}
    lap = curves["Laplace"]
    np.testing.assert_allclose(lap.accuracy, [0.75, 0.5, 0.25, 0.25])
    np.testing.assert_allclose(lap.best_sigma, [0.5, 0.5, 0.25, 0.5])
    np.testing.assert_allclose(curves["UniformCube"].accuracy, [0.75, 0.75, 0.0, 0.0])


def test_markdown_table_has_one_row_per_distribution_and_bold_winners(runs):
    table = markdown_table(upper_envelopes(runs, [0, 0.1, 0.4], "l1"), "l1", caption="Table 1")
    lines = table.splitlines()
    assert lines[0] == "Table 1"
    assert lines[2] == "| l1 radius | 0 | 0.1 | 0.4 |"
    assert lines[4] == "| Laplace | **75.0** | 50.0 | **25.0** |"
    assert lines[5] == "| UniformCube | **75.0** | **75.0** | 0.0 |"


def test_plot_is_a_png(runs, tmp_path):
    out = plot_curves(upper_envelopes(runs, np.linspace(0, 1, 50), "l1"), "l1", tmp_path / "p.png")
    assert open(out, "rb").read(8) == PNG_MAGIC


def test_radius_grid_is_round_and_covers_the_largest_radius(runs):
    grid = radius_grid(runs, "l1")
    assert grid[0] == 0 and grid[-1] >= 0.7 and len(grid) == 8


def test_missing_adversary_is_a_clear_error(runs):
    with pytest.raises(ValueError, match="no l2 radii"):
        certified_accuracy(runs[0], [0.0], "l2")


def test_report_command_prints_table_and_writes_plot(runs, tmp_path, capsys):
    png, md = tmp_path / "plot.png", tmp_path / "t.md"
    assert main(["report", str(tmp_path), "--radii", "0", "0.1", "--plot", str(png), "--markdown", str(md)]) == 0
    out = capsys.readouterr().out
    assert "| UniformCube | **75.0** | **75.0** |" in out
    assert open(png, "rb").read(8) == PNG_MAGIC and "Laplace" in md.read_text()


def test_report_command_on_missing_files_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing.tsv")]) == 2
    assert "no result file" in capsys.readouterr().err


def test_demo_quick_trains_certifies_and_reports(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for name in ("UniformCube", "Laplace", "Gaussian"):
        assert f"| {name} |" in printed
        res = read_results(out / f"{name}-sigma0.5" / "certify_l1.tsv")
        assert res.columns["index"].tolist() == list(range(0, 450, 15))
        assert res.meta["sigma"] == 0.5 and res.meta["distribution"] == name
    assert open(out / "certified_accuracy_l1.png", "rb").read(8) == PNG_MAGIC
    assert "| l1 radius |" in (out / "table_l1.md").read_text()
    # a rerun resumes everything and reprints the same table
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert printed.split("\n\n")[-2] == capsys.readouterr().out.split("\n\n")[-2]


@pytest.fixture
def bad_files(tmp_path):
    """Four Laplace files that would lift the Laplace row to 100 % if they were combined with the good
    ones: each is wrong for one reason."""
    perfect = [(i, i, 5.0) for i in range(4)]
    bad = tmp_path / "bad"
    bad.mkdir()
    write(bad / "partial.tsv", "Laplace", 1.0, perfect, total=8)
    write(bad / "train.tsv", "Laplace", 1.0, perfect, split="train")
    write(bad / "other_n.tsv", "Laplace", 1.0, perfect, n=300)
    write(bad / "torn.tsv", "Laplace", 1.0, perfect)
    with open(bad / "torn.tsv", "a") as fh:
        fh.write("4\t1\t1\t0.9")  # a crash in mid-row
    return sorted(p.name for p in bad.iterdir())


def report_output(capsys, *args) -> tuple[int, str, str]:
    code = main(["report", *map(str, args), "--radii", "0", "0.1"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_report_combines_only_complete_compatible_test_split_files(runs, bad_files, tmp_path, capsys):
    clean = [tmp_path / name for name in ("lap1.tsv", "lap2.tsv", "uni.tsv")]
    code, expected, err = report_output(capsys, *clean)
    assert code == 0 and err == ""
    code, out, err = report_output(capsys, tmp_path)
    assert code == 0
    assert out == expected and "| Laplace | **75.0** | 50.0 |" in out
    for name in bad_files:
        assert name in err
    assert "partial (4 of 8" in err and "train split" in err and "n = 300 vs 1000" in err and "torn" in err
    assert "n = 1000, alpha = 0.001, 4 inputs per file (3 result files)" in out


def test_report_allow_mixed_tabulates_them_with_the_warnings(runs, bad_files, tmp_path, capsys):
    code, out, err = report_output(capsys, tmp_path, "--allow-mixed")
    assert code == 0 and "| Laplace | **100.0** | **100.0** |" in out
    assert all(name in err for name in bad_files) and "included anyway" in err
    assert "n = 300, 1000" in out


def test_report_with_only_bad_files_is_a_one_line_error(bad_files, tmp_path, capsys):
    (tmp_path / "bad" / "other_n.tsv").unlink()  # complete and alone, it would make a table of its own
    code, out, err = report_output(capsys, tmp_path / "bad")
    assert code == 2 and "--allow-mixed" in err.splitlines()[-1] and out == ""
