"""Issue 9, items 7, 8, 10, 11 and 13: stale results, training resume with other settings, one-line
errors for user mistakes, --device cuda, and the default thread count."""
from __future__ import annotations

import math
import os

import pytest
import torch
from toys import run_cli as cli
from toys import train_with_cli

from wulff.certify import read_results
from wulff.cli import main
from wulff.errors import UserError
from wulff.train import TrainConfig, build_model, cosine_lr, load_dataset, named_distribution, train_smoothed
from wulff.train.distributed import resolve_device
from wulff.train.threads import default_threads

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ["--batch-size", "512", "--no-progress", "--threads", "1"]
CERT = ["--n0", "8", "--n", "50", "--batch-size", "50", "--alpha", "0.1", "--skip", "90", "--adversaries", "l1",
        "--no-progress", "--threads", "1"]




def one_line_error(capsys, *args) -> str:
    code, _, err = cli(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) >= 1 and "Traceback" not in err, err
    return lines[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_with_cli(tmp_path_factory.mktemp("run")).parent


def test_certify_resumes_the_same_checkpoint_under_another_path_and_shards_merge(trained, tmp_path, monkeypatch,
                                                                                   capsys):
    ckpt = trained / "checkpoint.pt"
    out = tmp_path / "r.tsv"
    assert cli(capsys, "certify", ckpt, "--out", out, "--shard", 0, "--num-shards", 2, *CERT)[0] == 0
    monkeypatch.chdir(trained.parent)  # the same checkpoint, spelled relative to another folder
    relative = os.path.join(".", trained.name, "..", trained.name, "checkpoint.pt")
    assert cli(capsys, "certify", relative, "--out", out, "--shard", 1, "--num-shards", 2, *CERT)[0] == 0
    again = cli(capsys, "certify", relative, "--out", out, "--shard", 1, "--num-shards", 2, *CERT)
    assert again[0] == 0  # resumes
    shards = [out.with_name(f"r.shard-{i}-of-2.tsv") for i in range(2)]
    assert cli(capsys, "merge", tmp_path / "m.tsv", *shards)[0] == 0
    assert read_results(tmp_path / "m.tsv").columns["index"].tolist() == [0, 90, 180, 270, 360]


def test_certify_refuses_to_resume_after_the_model_was_retrained_in_place(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--sigma", "0.5", "--epochs", "1", "--out", str(run), *FAST]) == 0
    out = tmp_path / "r.tsv"
    assert cli(capsys, "certify", run / "checkpoint.pt", "--out", out, "--max-inputs", 2, *CERT)[0] == 0
    assert main(["train", "--sigma", "0.5", "--epochs", "1", "--seed", "7", "--out", str(run), "--no-resume",
                 *FAST]) == 0
    line = one_line_error(capsys, "certify", run / "checkpoint.pt", "--out", out, *CERT)
    assert "other model weights" in line and "model_sha256" in line
    assert len(read_results(out)) == 2  # nothing appended


def test_train_refuses_to_resume_under_other_settings(trained, capsys):
    for change in (["--noise", "Laplace"], ["--sigma", "0.25"], ["--model", "cnn"], ["--lr", "0.05"]):
        line = one_line_error(capsys, "train", "--sigma", "0.5", "--epochs", "2", "--out", trained, *FAST, *change)
        assert "other settings" in line and "--no-resume" in line
    line = one_line_error(capsys, "train", "--sigma", "0.5", "--noise", "Laplace", "--out", trained, *FAST)
    assert "Gaussian() -> Laplace()" in line


def test_extending_epochs_follows_the_documented_cosine_schedule(tmp_path):
    train_set, info = load_dataset("digits", "train")
    q = named_distribution("Gaussian", info.d, sigma=0.5)
    ckpt = tmp_path / "c.pt"
    model = build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std)
    train_smoothed(model, q, train_set, TrainConfig(epochs=2, batch_size=512, lr=0.1), checkpoint=ckpt,
                   progress=False)
    logs = []
    history = train_smoothed(model, q, train_set, TrainConfig(epochs=4, batch_size=512, lr=0.1), checkpoint=ckpt,
                             progress=False, log=logs.append)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    expected = [0.1, 0.05, 0.05 * (1 + math.cos(math.pi / 2)), 0.05 * (1 + math.cos(3 * math.pi / 4))]
    assert [h["lr"] for h in history] == pytest.approx([0.1, 0.05 * (1 + math.cos(math.pi / 2)), *expected[2:]])
    assert cosine_lr(TrainConfig(epochs=4, lr=0.1), 3) == pytest.approx(expected[3])
    assert "spans 4 epochs (was 2)" in logs[0]


@pytest.mark.parametrize("args, needle", [
    (["certify", "{empty}", "--out", "{tmp}/r.tsv"], "not a wulff checkpoint"),
    (["certify", "{random}", "--out", "{tmp}/r.tsv"], "not a wulff checkpoint"),
    (["certify", "{truncated}", "--out", "{tmp}/r.tsv"], "not a wulff checkpoint"),
    (["certify", "{tmp}", "--out", "{tmp}/r.tsv"], "is a folder"),
    (["certify", "{ckpt}", "--out", "{tmp}"], "--out"),
    (["certify", "{ckpt}", "--out", "{random}/r.tsv"], "--out"),
    (["certify", "{ckpt}", "--out", "{tmp}/r.tsv", "--device", "bogus"], "--device must be cpu, cuda or cuda:N"),
    (["certify", "{ckpt}", "--out", "{tmp}/r.tsv", "--device", "cuda"], "no CUDA device"),
    (["certify", "{ckpt}", "--out", "{tmp}/r.tsv", "--threads", "0"], "--threads: must be a positive integer"),
    (["certify", "{ckpt}", "--out", "{tmp}/r.tsv", "--max-inputs", "-1"], "--max-inputs: must be a positive"),
    (["train", "--sigma", "0.5", "--param", "zz=1", "--out", "{tmp}/t"], "no shape parameter zz"),
    (["train", "--sigma", "0.5", "--noise", "Pareto", "--out", "{tmp}/t"], "Pareto needs its shape parameter a"),
    (["train", "--sigma", "0.5", "--out", "{random}"], "--out"),
    (["demo", "--out", "{random}"], "--out"),
    (["demo", "--distributions", "Pareto", "--param", "zz=1", "--out", "{tmp}/d"], "zz"),
    (["report", "{tmp}", "--radii", "nan"], "--radii: must be a finite number >= 0"),
    (["merge", "{tmp}/m.tsv", "{tmp}/a.tsv", "{tmp}/b.tsv"], "differing: n 50 -> 60"),
])
def test_user_mistakes_get_one_line_errors(trained, tmp_path, capsys, args, needle):
    files = {"tmp": tmp_path, "ckpt": trained / "checkpoint.pt", "empty": tmp_path / "empty.pt",
             "random": tmp_path / "random.pt", "truncated": tmp_path / "truncated.pt",
             "badtsv": tmp_path / "bad.tsv"}
    files["empty"].write_bytes(b"")
    files["random"].write_bytes(os.urandom(500))
    files["truncated"].write_bytes(files["ckpt"].read_bytes()[:3000])
    header = ('# wulff-certify {"adversaries": ["l1"]}\n'
              "index\tlabel\tprediction\trho_lower\tradius_l1\tcorrect\tseconds\n")
    files["badtsv"].write_text(header + "0\t1\t1\t0.9\tabc\t1\t0.1\n")
    for name, n in (("a", 50), ("b", 60)):
        out = str(tmp_path / f"{name}.tsv")
        assert main(["certify", str(files["ckpt"]), "--out", out, *CERT[:2], "--n", str(n), *CERT[4:]]) == 0
    capsys.readouterr()
    argv = [a.format(**files) for a in args]
    code, _, err = cli(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert needle in err, err


def test_a_bad_result_file_alone_is_named_with_its_line_and_nothing_is_tabulated(tmp_path, capsys):
    # a report over nothing but a damaged file: one warning naming it (file, line, why), one error
    bad = tmp_path / "bad.tsv"
    bad.write_text('# wulff-certify {"adversaries": ["l1"]}\n'
                   "index\tlabel\tprediction\trho_lower\tradius_l1\tcorrect\tseconds\n"
                   "0\t1\t1\t0.9\tabc\t1\t0.1\n")
    code, _, err = cli(capsys, "report", bad)
    warning, error = err.strip().splitlines()
    assert code == 2
    assert "bad.tsv" in warning and "line 3" in warning and "'abc'" in warning, warning
    assert error.startswith("wulff report: error:"), error


def test_ctrl_c_is_one_line_with_exit_130(trained, tmp_path, capsys, monkeypatch):
    import wulff.certify as certify  # the command imports it when it runs (a light front door)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(certify, "certify_dataset", interrupted)
    code, _, err = cli(capsys, "certify", trained / "checkpoint.pt", "--out", tmp_path / "r.tsv", *CERT)
    assert code == 130 and err.strip() == "wulff certify: interrupted; rerun the same command to resume"


def test_device_cuda_maps_to_the_local_rank_or_fails_clearly():
    if torch.cuda.is_available():
        assert resolve_device("cuda", 0) == torch.device("cuda", 0)
    else:
        with pytest.raises(UserError, match="no CUDA device"):
            resolve_device("cuda", 0)
    assert resolve_device("cpu", 3) == torch.device("cpu")


def test_default_threads_one_for_small_models_torch_default_for_large():
    small = build_model("mlp", (1, 8, 8), 10)
    large = build_model("resnet18", (3, 32, 32), 10)
    assert default_threads(small, (1, 8, 8)) == 1
    assert default_threads(build_model("cnn", (1, 8, 8), 10), (1, 8, 8)) == 1
    assert default_threads(large, (3, 32, 32)) is None


def test_certify_without_threads_uses_one_thread_for_a_small_model(trained, tmp_path, capsys):
    torch.set_num_threads(2)
    args = [a for a in CERT if a not in ("--threads", "1")]
    assert cli(capsys, "certify", trained / "checkpoint.pt", "--out", tmp_path / "r.tsv", *args)[0] == 0
    assert torch.get_num_threads() == 1
