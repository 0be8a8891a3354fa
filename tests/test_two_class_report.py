"""Issue 28, section 2 follow-up: fixed-n CERTIFY stays Cohen et al.'s input for input by default (the
two-class form on request, on by default for the adaptive procedure); result files of two-class runs
record p_B's bound, the form and the p_A form's radius per row; `wulff report` counts what the
two-class form adds."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from scipy.stats import beta, norm
from toys import Slabs, run_cli, train_with_cli

import wulff.distributions as D
from wulff.certify import DerandomizedSmoothed, Smoothed, certify_dataset, read_results
from wulff.certify.results import ResultWriter, columns_for, two_class_columns
from wulff.errors import UserError
from wulff.splitting import SplittingNoise

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIGMA, A, B = 0.5, 0.5, 0.7  # three slabs: class 0 below A, class 2 between A and B, class 1 above B
ALPHA = 0.001


def slabs() -> Smoothed:
    return Smoothed(Slabs(A, B), D.Gaussian(2, sigma=SIGMA), 3)


def votes(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cohen_radius(top: int, n: int, alpha: float) -> tuple[float, float]:
    """Cohen et al.'s CERTIFY from the top class's votes: the Clopper-Pearson bound (scipy's beta
    quantile) and the Gaussian l2 radius sigma Phi^-1(rho)."""
    rho = float(beta.ppf(alpha, top, n - top + 1))
    return rho, SIGMA * float(norm.ppf(rho))


# -- 1. Cohen parity ---------------------------------------------------------------------------------
def test_fixed_n_certify_gives_cohens_p_a_radius_by_default_and_the_two_class_one_when_asked():
    s = slabs()
    plain = s.certify(torch.zeros(2), 100, 20_000, ALPHA, 5000, adversaries=("l2",), generator=votes(3))
    rho, radius = cohen_radius(plain.top_count, 20_000, ALPHA)
    assert plain.prediction == 0 and plain.form == {"l2": "p_A"} and plain.rho_b_upper is None
    assert plain.rho_lower == pytest.approx(rho, rel=1e-12) and plain.rho_lower <= rho * (1 + 1e-15)
    assert plain.radius["l2"] == float(s.certificate("l2").radius(plain.rho_lower))  # R(rho_lower), p_A alone
    assert plain.radius["l2"] == pytest.approx(radius, rel=1e-7) and plain.radius["l2"] <= radius
    both = s.certify(torch.zeros(2), 100, 20_000, ALPHA, 5000, adversaries=("l2",), two_class=True,
                     generator=votes(3))  # the same votes
    assert both.top_count == plain.top_count and both.form == {"l2": "two-class (differential)"}
    rho_a, _ = cohen_radius(both.top_count, 20_000, 0.9 * ALPHA)  # p_A at (1 - TWO_CLASS_SHARE) alpha
    assert both.rho_lower == pytest.approx(rho_a, rel=1e-12)
    theorem_1 = SIGMA / 2 * (norm.ppf(both.rho_lower) - norm.ppf(both.rho_b_upper))  # Cohen et al.'s Theorem 1
    assert both.radius["l2"] == pytest.approx(theorem_1, rel=1e-7) and both.radius["l2"] > plain.radius["l2"]
    assert both.radius["l2"] <= (A + B) / 2  # never above the exact two-class radius


def test_certify_from_counts_is_cohens_by_default():
    from wulff.certify.adaptive import certify_counts

    cert = slabs().certificate("l2")
    selection, counts = np.array([80, 10, 10]), np.array([8000, 900, 1100])  # three plausible classes
    plain = certify_counts(selection, counts, ALPHA, {"l2": cert})
    assert plain.rho_b_upper is None and plain.form == {"l2": "p_A"}
    assert plain.rho_lower == pytest.approx(cohen_radius(8000, 10_000, ALPHA)[0], rel=1e-12)
    assert certify_counts(selection, counts, ALPHA, {"l2": cert}, two_class=True).rho_b_upper is not None


def test_certify_dataset_fixed_n_is_p_a_by_default_and_records_the_choice(tmp_path):
    data = [(torch.zeros(2), 0), (torch.tensor([0.1, 0.0]), 0)]
    options = dict(n0=100, n=4000, alpha=ALPHA, batch_size=4100, adversaries=("l2",), progress=False)
    fixed = certify_dataset(slabs(), data, tmp_path / "f.tsv", **options)
    assert fixed.meta["two_class"] is False and list(fixed.columns) == columns_for(["l2"])
    for row, (x, _) in enumerate(data):  # each input's noise stream: seed 0, its index
        again = slabs().certify(x, 100, 4000, ALPHA, 4100, ("l2",),
                                generator=torch.Generator().manual_seed(row))
        assert fixed.columns["radius_l2"][row] == again.radius["l2"]
        assert again.radius["l2"] == pytest.approx(cohen_radius(again.top_count, 4000, ALPHA)[1], rel=1e-7)
    asked = certify_dataset(slabs(), data, tmp_path / "t.tsv", two_class=True, **options)
    assert asked.meta["two_class"] is True
    assert list(asked.columns) == columns_for(["l2"]) + two_class_columns(["l2"])
    adaptive = certify_dataset(slabs(), data, tmp_path / "a.tsv", adaptive=True, **options)
    assert adaptive.meta["two_class"] is True and "form_l2" in adaptive.columns
    off = certify_dataset(slabs(), data, tmp_path / "o.tsv", adaptive=True, two_class=False, **options)
    assert off.meta["two_class"] is False and "form_l2" not in off.columns
    with pytest.raises(TypeError, match="two_class must be True, False or None"):
        certify_dataset(slabs(), data, tmp_path / "x.tsv", two_class="yes", **options)


# -- 2. the rows of a two-class run ------------------------------------------------------------------
def test_two_class_rows_record_p_b_bound_form_and_p_a_radius(tmp_path):
    data = [(torch.zeros(2), 0), (torch.tensor([-1.0, 0.0]), 0), (torch.tensor([0.6, 0.0]), 2)]
    run = certify_dataset(slabs(), data, tmp_path / "t.tsv", n0=100, n=4000, alpha=ALPHA, batch_size=4100,
                          adversaries=("l2",), two_class=True, progress=False)
    rho, rho_b = run.columns["rho_lower"], run.columns["rho_b_upper"]
    form, radius, p_a = run.columns["form_l2"], run.columns["radius_l2"], run.columns["radius_l2_pA"]
    assert form.dtype == np.int64 and set(form.tolist()) <= {0, 1, 2}
    assert form[0] == 2  # three plausible classes at the origin: Theorem 1 in full
    assert form[1] == 0 and rho_b[1] >= 1 - rho[1]  # one class far from the others: p_B = 1 - p_A
    assert form[2] == 0 and run.columns["prediction"][2] == -1 and radius[2] == 0 == p_a[2]  # abstains
    answered = run.columns["prediction"] != -1
    assert np.allclose(p_a[answered], SIGMA * norm.ppf(rho[answered]), rtol=1e-7)  # R(rho_lower)
    assert radius[0] > p_a[0] and radius[1] == p_a[1]
    assert radius[0] == pytest.approx(SIGMA / 2 * (norm.ppf(rho[0]) - norm.ppf(rho_b[0])), rel=1e-7)


def write_file(path, rows, *, two_class: bool, adversaries=("l2",), meta=None):
    """A result file of the given rows (dicts), as certify_dataset lays it out."""
    settings = {"distribution": "Gaussian", "params": {}, "sigma": SIGMA, "d": 2, "n0": 100, "n": 1000,
                "alpha": ALPHA, "adversaries": list(adversaries), "skip": 1, "dataset_size": len(rows),
                "indices_total": len(rows), "shard": 0, "num_shards": 1, "split": "test", "two_class": two_class,
                **(meta or {})}
    columns = columns_for(adversaries) + (two_class_columns(adversaries) if two_class else [])
    with ResultWriter(path, settings, adversaries, columns=columns) as writer:
        for row in rows:
            writer.write(row)
    return path


def row(index: int, radius: float, p_a: float, form: int, correct: int = 1) -> dict:
    return {"index": index, "label": 0, "prediction": 0 if radius > 0 else -1, "rho_lower": 0.9,
            "radius_l2": radius, "correct": correct if radius > 0 else 0, "seconds": 0.1, "samples": 1100,
            "rho_b_upper": 0.05, "form_l2": form, "radius_l2_pA": p_a}


# -- 3. what `wulff report` counts -------------------------------------------------------------------
def test_report_counts_what_the_two_class_form_adds(tmp_path, capsys):
    rows = [row(0, 0.6, 0.4, 2), row(1, 0.3, 0.3, 0), row(2, 0.45, 0.2, 1), row(3, 0.0, 0.0, 0),
            row(4, 0.7, 0.5, 2, correct=0)]
    two = write_file(tmp_path / "two.tsv", rows, two_class=True)
    code, out, err = run_cli(capsys, "report", two, "--adversary", "l2", "--radii", "0", "0.25", "0.5")
    assert code == 0, err
    # answered: 4 (row 3 abstains); two-class form: rows 0, 2 and 4; correct and above r:
    # r = 0.25: rows 0, 1, 2 with the radii, 0, 1 with the p_A ones; r = 0.5: row 0 with the radii, none with p_A's
    assert f"{two}: two-class form: 3 of 4 certified l2 radii" in out
    assert "at r = 0: +0, 0.25: +1, 0.5: +1" in out
    # a file without the form columns (a p_A run, or one written before they existed) reports as before
    plain = [{k: v for k, v in row(i, r, r, 0).items() if k in columns_for(["l2"])}
             for i, r in enumerate((0.6, 0.3, 0.0))]
    path = write_file(tmp_path / "plain.tsv", plain, two_class=False)
    code, out, err = run_cli(capsys, "report", path, "--adversary", "l2", "--radii", "0", "0.5")
    assert code == 0 and "two-class form" not in out, err
    assert "| Gaussian | **66.7** | **33.3** |" in out


def test_a_form_code_out_of_range_is_an_invalid_row(tmp_path, capsys):
    path = write_file(tmp_path / "bad.tsv", [row(0, 0.6, 0.4, 2), row(1, 0.3, 0.3, 7)], two_class=True)
    code, out, err = run_cli(capsys, "report", path, "--adversary", "l2", "--allow-mixed")
    assert code == 0 and f"{path}, line 4: form_l2 = " in err and "not a valid row" in err, err
    assert "two-class form: 1 of 1 certified l2 radii" in out


# -- files written before two_class was recorded -----------------------------------------------------
def without_two_class_key(path) -> None:
    """Rewrite a result file's header as it was before the two_class key existed."""
    lines = path.read_text().splitlines(keepends=True)
    magic, settings = lines[0].split(" ", 2)[:2], json.loads(lines[0].split(" ", 2)[2])
    settings.pop("two_class")
    lines[0] = " ".join(magic) + " " + json.dumps(settings, sort_keys=True) + "\n"
    path.write_text("".join(lines))


@pytest.mark.parametrize("adaptive", [False, True])
def test_a_file_from_before_the_two_class_key_resumes_in_its_own_layout(tmp_path, adaptive):
    data = [(torch.zeros(2), 0), (torch.tensor([0.1, 0.0]), 0), (torch.tensor([-0.2, 0.0]), 0)]
    options = dict(n0=100, n=2000, alpha=ALPHA, batch_size=2100, adversaries=("l2",), progress=False,
                   adaptive=adaptive)
    path = tmp_path / "old.tsv"
    certify_dataset(slabs(), data, path, max_inputs=1, two_class=False, **options)
    without_two_class_key(path)
    before = path.read_text()
    with pytest.raises(ValueError, match="two_class"):  # asked for explicitly: other settings, refused
        certify_dataset(slabs(), data, path, two_class=True, **options)
    assert path.read_text() == before
    resumed = certify_dataset(slabs(), data, path, **options)  # the default: resumes as it was, p_A form
    assert len(resumed) == 3 and "two_class" not in resumed.meta and list(resumed.columns) == columns_for(["l2"])
    assert path.read_text().startswith(before)


def test_two_class_is_refused_for_dssn_which_is_certified_exactly(tmp_path):
    dssn = DerandomizedSmoothed(Slabs(A, B), SplittingNoise(2, 0.5, quantization=4), 3)
    data = [(torch.zeros(2), 0)]
    for choice in (True, False):
        with pytest.raises(ValueError, match="two_class is a setting of Monte Carlo certification"):
            certify_dataset(dssn, data, tmp_path / "d.tsv", batch_size=4, adversaries=("l1",), two_class=choice,
                            progress=False)
        assert not (tmp_path / "d.tsv").exists()
    exact = certify_dataset(dssn, data, tmp_path / "d.tsv", batch_size=4, adversaries=("l1",), progress=False)
    assert "two_class" not in exact.meta and "form_l1" not in exact.columns
    from wulff.cli.cmd_certify import check_deterministic_arguments

    for flag, choice in (("--two-class", True), ("--no-two-class", False)):  # wulff certify refuses either flag
        given = argparse.Namespace(n0=None, n=None, alpha=None, adaptive=False, two_class=choice)
        with pytest.raises(UserError, match=f"{flag} does not apply to a DSSN model"):
            check_deterministic_arguments(given, dssn)


# -- the command line --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return train_with_cli(tmp_path_factory.mktemp("run"))


CERT = ["--n0", "100", "--n", "400", "--batch-size", "500", "--alpha", "0.1", "--skip", "90",
        "--adversaries", "l2", "--no-progress", "--threads", "1"]


def test_wulff_certify_two_class_option_defaults_and_a_tiny_real_report(checkpoint, tmp_path, capsys):
    for name, options, expected in (("fixed", [], False), ("asked", ["--two-class"], True),
                                    ("adaptive", ["--adaptive"], True),
                                    ("adaptive-off", ["--adaptive", "--no-two-class"], False)):
        out = tmp_path / f"{name}.tsv"
        code, _, err = run_cli(capsys, "certify", checkpoint, "--out", out, *CERT, *options)
        assert code == 0, err
        results = read_results(out)
        assert results.meta["two_class"] is expected and ("form_l2" in results.columns) is expected, name
    code, out, err = run_cli(capsys, "report", tmp_path / "asked.tsv", "--adversary", "l2")
    assert code == 0 and f"{tmp_path / 'asked.tsv'}: two-class form: " in out, err
