"""Issue 12 wiring: certify_dataset(adaptive=True), result files that record the samples used,
`wulff certify --adaptive [--radii ...]` and the forward-pass total of `wulff report`."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset
from toys import run_cli as cli
from toys import train_with_cli

import wulff.distributions as D
from wulff.certify import Smoothed, certify_dataset, read_results
from wulff.certify.adaptive import FIRST_LOOK
from wulff.certify.results import MAGIC

pytestmark = pytest.mark.usefixtures("one_torch_thread")

D_IN = 4


class Threshold(torch.nn.Module):
    def forward(self, x):
        return torch.stack([-x[:, 0], x[:, 0]], dim=1)


def clear_dataset(size: int = 6) -> TensorDataset:
    """Inputs far from the decision boundary x_1 = 0 (top-class probability ~1)."""
    x = torch.zeros(size, D_IN)
    x[:, 0] = torch.tensor([5.0, -5.0] * (size // 2))
    return TensorDataset(x, (x[:, 0] > 0).long())


def run(path, **kw):
    options = dict(n0=100, n=20_000, alpha=0.001, batch_size=1000, adversaries=("l1",), progress=False) | kw
    return certify_dataset(Smoothed(Threshold(), D.Laplace(D_IN, lam=0.5), 2), clear_dataset(), path, **options)


def test_adaptive_records_fewer_samples_on_clear_inputs(tmp_path):
    res = run(tmp_path / "a.tsv", adaptive=True, radii=[0.0, 0.5, 1.0])
    assert res.meta["adaptive"] is True and res.meta["radii"] == [0.0, 0.5, 1.0]
    assert res.correct.all() and (res.radius("l1") >= 1.0).all()
    assert (res.samples < 100 + 20_000).all() and (res.samples >= 100 + FIRST_LOOK).all()
    plain = run(tmp_path / "c.tsv", n=2000)
    assert "adaptive" not in plain.meta and (plain.samples == 2100).all()


def test_resume_with_other_adaptive_settings_is_refused(tmp_path):
    path = tmp_path / "a.tsv"
    run(path, adaptive=True, radii=[0.5], max_inputs=2)
    for other in (dict(adaptive=True, radii=[1.0]), dict(adaptive=True), dict()):
        with pytest.raises(ValueError, match="other settings.*(radii|adaptive)"):
            run(path, **other)
    assert len(run(path, adaptive=True, radii=[0.5])) == 6  # the same settings resume


def test_radii_need_adaptive_and_are_checked(tmp_path):
    with pytest.raises(ValueError, match="adaptive=True"):
        run(tmp_path / "r.tsv", radii=[0.5])
    with pytest.raises(ValueError, match="increasing"):
        run(tmp_path / "r.tsv", adaptive=True, radii=[0.5, 0.2])
    with pytest.raises(ValueError, match=">= 0"):
        run(tmp_path / "r.tsv", adaptive=True, radii=[-0.5, 0.2])
    assert not (tmp_path / "r.tsv").exists()


def test_files_without_the_samples_column_read_and_resume(tmp_path):
    path = tmp_path / "old.tsv"
    run(path, n=2000, max_inputs=2)
    lines = path.read_text().splitlines()  # rewrite it as before the samples column existed
    path.write_text("\n".join([lines[0]] + ["\t".join(line.split("\t")[:-1]) for line in lines[1:]]) + "\n")
    old = read_results(path)
    assert "samples" not in old.columns and (old.samples == 2100).all()
    resumed = run(path, n=2000)
    assert len(resumed) == 6 and "samples" not in resumed.columns and (resumed.samples == 2100).all()
    assert lines[0].startswith(MAGIC)


CERT = ["--n0", "10", "--n", "1990", "--batch-size", "500", "--alpha", "0.01", "--skip", "90",
        "--adversaries", "l1", "--no-progress", "--threads", "1"]




@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return train_with_cli(tmp_path_factory.mktemp("run"))


def test_cli_certify_adaptive_and_report_prints_the_forward_passes(checkpoint, tmp_path, capsys):
    out = tmp_path / "adaptive.tsv"
    code, _, err = cli(capsys, "certify", checkpoint, "--out", out, "--adaptive", "--radii", "0", "0.5", *CERT)
    assert code == 0, err
    res = read_results(out)
    assert res.meta["adaptive"] is True and res.meta["radii"] == [0.0, 0.5] and len(res) > 0
    assert (res.samples <= 2000).all()
    plain = tmp_path / "plain.tsv"
    assert cli(capsys, "certify", checkpoint, "--out", plain, *CERT)[0] == 0
    assert (read_results(plain).samples == 2000).all()
    code, stdout, err = cli(capsys, "report", out, plain, "--allow-mixed")
    assert code == 0, err
    total = int(res.samples.sum()) + 2000 * len(read_results(plain))
    assert f"forward passes (noisy samples): {total:,} in all" in stdout
    assert "samples per input (adaptive, n0 + n = 10 + 1990)" in stdout
    assert "2,000 samples per input (n0 + n = 10 + 1990)" in stdout
    # resuming the adaptive file without --adaptive (or with other radii) is refused
    for other in ([], ["--adaptive"], ["--adaptive", "--radii", "0.5"]):
        code, _, err = cli(capsys, "certify", checkpoint, "--out", out, *other, *CERT)
        assert code == 2 and "other settings" in err and "Traceback" not in err, err


@pytest.mark.parametrize("args, needle", [
    (["--radii", "0.5"], "--radii is a setting of adaptive certification: add --adaptive"),
    (["--adaptive", "--radii", "0.5", "0.2"], "--radii must be strictly increasing"),
    (["--adaptive", "--radii", "-1"], "--radii"),
])
def test_bad_radii_are_one_line_errors(args, needle, tmp_path, capsys):
    code, _, err = cli(capsys, "certify", tmp_path / "missing.pt", "--out", tmp_path / "r.tsv", *args)
    assert code == 2 and len(err.strip().splitlines()) <= 2 and needle in err, err
    assert not (tmp_path / "r.tsv").exists()


def test_demo_adaptive_says_so_and_saves_forward_passes(tmp_path, capsys):
    from wulff.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--adaptive", "--distributions", "Laplace", "--n", "3000", "--skip", "45",
                 "--out", str(out), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "adaptively" in stdout and "forward passes (noisy samples)" in stdout
    res = read_results(out / "Laplace-sigma0.5" / "certify_l1.tsv")
    assert res.meta["adaptive"] is True and (res.samples <= 32 + 3000).all() and res.samples.min() < 32 + 3000
