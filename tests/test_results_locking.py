"""Issue 24, items 1, 2 and 11 (DSSN part): one writer per result file or output folder, duplicate
rows repaired only when they agree, a rejected command leaves nothing behind, and DSSN certification
refuses the sampling settings it would ignore."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset
from toys import run_cli, train_with_cli

import wulff.distributions as D
from wulff.certify import Smoothed, certify_dataset, read_results
from wulff.certify.attack_dataset import AttackWriter, read_attacks

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--batch-size", "512", "--no-progress", "--threads", "1"]
CERT = ["--n0", "8", "--n", "50", "--batch-size", "50", "--alpha", "0.1", "--skip", "90", "--adversaries", "l1",
        "--no-progress", "--threads", "1"]
ATTACK = ["--eps", "0.25", "--steps", "2", "--samples", "2", "--n", "50", "--skip", "90", "--no-progress",
          "--threads", "1"]


def environment() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


@contextmanager
def lock_held_elsewhere(target: Path, folder: bool = False):
    """Another process holding the output lock of ``target`` (a folder with ``folder``) until the
    block ends, then killed by SIGKILL (so its lock file stays behind, naming a dead process)."""
    code = ("import sys; from wulff.locking import OutputLock; "
            "OutputLock(sys.argv[1], folder=sys.argv[2] == 'folder').acquire(); "
            "print('ready', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(target), "folder" if folder else "file"],
                              stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())
    try:
        assert holder.stdout.readline().strip() == "ready", holder.stderr.read()
        yield holder
    finally:
        holder.kill()
        holder.wait(timeout=30)


def one_line_error(capsys, *args) -> str:
    code, _, err = run_cli(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return train_with_cli(tmp_path_factory.mktemp("run"))


class Threshold(torch.nn.Module):
    """Class 1 when x_1 > 0; raises KeyboardInterrupt on the first forward pass with ``crash``."""

    def __init__(self, crash: bool = False):
        super().__init__()
        self.crash = crash

    def forward(self, x):
        if self.crash:
            raise KeyboardInterrupt("simulated crash")
        return torch.stack([-x[:, 0], x[:, 0]], dim=1)


def certify(path: Path, model=None):
    x = torch.linspace(-1, 1, 24).reshape(6, 4)
    return certify_dataset(Smoothed(model or Threshold(), D.Laplace(4, lam=0.5), 2),
                           TensorDataset(x, (x[:, 0] > 0).long()), path, n0=8, n=64, alpha=0.01,
                           batch_size=64, adversaries=("l1",), progress=False)


# -- item 1: one writer at a time -----------------------------------------------------------------------------
RACE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import torch
    from torch.utils.data import TensorDataset
    import wulff.distributions as D
    from wulff.certify import Smoothed, certify_dataset

    class Slow(torch.nn.Module):
        def forward(self, x):
            time.sleep(0.05)
            return torch.stack([-x[:, 0], x[:, 0]], dim=1)

    torch.set_num_threads(1)
    out, go = Path(sys.argv[1]), Path(sys.argv[2])
    x = torch.linspace(-1, 1, 24).reshape(6, 4)
    data = TensorDataset(x, (x[:, 0] > 0).long())
    print("waiting", flush=True)
    while not go.exists():
        time.sleep(0.005)
    try:
        certify_dataset(Smoothed(Slow(), D.Laplace(4, lam=0.5), 2), data, out, n0=8, n=64, alpha=0.01,
                        batch_size=64, adversaries=("l1",), progress=False)
    except Exception as exc:
        print(f"refused: {exc}", flush=True)
        sys.exit(3)
""")


def test_two_processes_certifying_one_file_at_once_write_each_input_once(tmp_path):
    script, out, go = tmp_path / "race.py", tmp_path / "res" / "c.tsv", tmp_path / "go"
    script.write_text(RACE)
    other = subprocess.Popen([sys.executable, str(script), str(out), str(go)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=environment())
    assert other.stdout.readline().strip() == "waiting", other.stderr.read()

    class WaitsForTheOther(Threshold):
        """Holds its first forward pass until the other process has ended: the runs overlap."""

        def forward(self, x):
            other.wait(timeout=240)
            return super().forward(x)

    go.touch()  # both certify the same file now: this process and the other one
    try:
        certify(out, WaitsForTheOther())
        here = None
    except ValueError as exc:  # refused: the other process holds the file
        here = str(exc)
    stdout, stderr = other.communicate(timeout=240)
    if here is None:  # this process won
        assert other.returncode == 3 and f"is in use by another process (pid {os.getpid()})" in stdout, stderr
    else:
        assert other.returncode == 0 and f"is in use by another process (pid {other.pid})" in here, stderr
    assert read_results(out).columns["index"].tolist() == list(range(6))  # each input once
    assert not Path(f"{out}.lock").exists()  # the winner removed its lock file


def test_a_held_result_file_stops_certify_and_attack_at_once_and_a_dead_holders_lock_is_taken_over(
        checkpoint, tmp_path, capsys):
    cert, attack = tmp_path / "c.tsv", tmp_path / "a.tsv"
    holders = {}
    for path, command, options in ((cert, "certify", CERT), (attack, "attack", ATTACK)):
        with lock_held_elsewhere(path) as holder:
            line = one_line_error(capsys, command, checkpoint, "--out", path, *options)
            assert f"{path} is in use by another process (pid {holder.pid})" in line
            assert not path.exists()
            holders[path] = holder.pid
    for path, pid in holders.items():  # killed: their lock files remain, naming dead processes ...
        assert Path(f"{path}.lock").read_text().split()[0] == str(pid)
    # ... and are taken over
    code, out, err = run_cli(capsys, "certify", checkpoint, "--out", cert, *CERT)
    assert code == 0 and f"{cert}: 5 rows" in out, err
    code, out, err = run_cli(capsys, "attack", checkpoint, "--out", attack, *ATTACK)
    assert code == 0 and f"{attack}: 5 rows" in out, err
    assert not Path(f"{cert}.lock").exists() and not Path(f"{attack}.lock").exists()


def test_each_shard_file_has_its_own_lock_so_shards_run_at_once(checkpoint, tmp_path, capsys):
    out = tmp_path / "r.tsv"
    shard = ["--out", out, "--num-shards", 2, *CERT]
    with lock_held_elsewhere(out.with_name("r.shard-0-of-2.tsv")) as holder:  # shard 0 is being written elsewhere
        line = one_line_error(capsys, "certify", checkpoint, "--shard", 0, *shard)
        assert f"r.shard-0-of-2.tsv is in use by another process (pid {holder.pid})" in line
        code, _, err = run_cli(capsys, "certify", checkpoint, "--shard", 1, *shard)
    assert code == 0, err
    assert read_results(out.with_name("r.shard-1-of-2.tsv")).columns["index"].tolist() == [90, 270]


def test_train_and_experiment_refuse_an_out_folder_in_use(tmp_path, capsys):
    folder = tmp_path / "runs"
    with lock_held_elsewhere(folder, folder=True) as holder:
        line = one_line_error(capsys, "train", "--sigma", "0.5", "--epochs", "1", "--out", folder, *FAST)
        assert f"{folder} is in use by another process (pid {holder.pid})" in line
        line = one_line_error(capsys, "experiment", "table1", "--out", folder, "--epochs", "1", "--no-progress")
        assert f"{folder} is in use by another process (pid {holder.pid})" in line
    assert [p.name for p in folder.iterdir()] == [".wulff.lock"]  # what the killed holder left: nothing more
    assert not (tmp_path / "runs.lock").exists()  # nothing outside the folder either
    code, _, err = run_cli(capsys, "train", "--sigma", "0.5", "--epochs", "1", "--out", folder, *FAST)
    assert code == 0, err  # the dead holder's lock is taken over
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pt"]


# -- item 1: duplicate rows -----------------------------------------------------------------------------------
def write_twice(path: Path, line: int, change=None) -> None:
    """Append another copy of the row on ``line`` (1-based), with other seconds and ``change(fields)``."""
    lines = path.read_text().splitlines()
    names = lines[1].split("\t")
    fields = lines[line - 1].split("\t")
    fields[names.index("seconds")] = "9.5"
    if change:
        change(names, fields)
    path.write_text("\n".join(lines + ["\t".join(fields)]) + "\n")


def test_identical_duplicates_are_refused_by_readers_and_repaired_by_a_rerun(tmp_path):
    path = tmp_path / "c.tsv"
    first = certify(path)
    write_twice(path, 5)  # input 2, again (as a second run at once wrote it: the same row, another time)
    write_twice(path, 7)  # input 4
    with pytest.raises(ValueError, match=r"c.tsv, lines 5, 9: input 2 appears 2 times"):
        read_results(path)
    with pytest.warns(UserWarning, match="removed 2 duplicate row"):
        again = certify(path)
    assert again.columns["index"].tolist() == list(range(6))
    assert again.radius("l1").tolist() == first.radius("l1").tolist()
    assert again.columns["seconds"].tolist() == first.columns["seconds"].tolist()  # the first copies kept


def test_conflicting_duplicates_are_refused_naming_the_input_and_left_as_they_are(tmp_path):
    path = tmp_path / "c.tsv"
    certify(path)

    def other_radius(names, fields):
        fields[names.index("radius_l1")] = "123.0"

    write_twice(path, 6, other_radius)  # input 3 with another radius
    text = path.read_text()
    with pytest.raises(ValueError, match=r"lines 6, 9: input 3 has 2 rows that disagree"):
        certify(path)
    assert path.read_text() == text


def test_attack_rows_are_keyed_by_input_and_eps(tmp_path):
    path = tmp_path / "a.tsv"
    row = {"index": 0, "label": 1, "prediction": 1, "prediction_attacked": 1, "robust": 1, "seconds": 0.1}
    with AttackWriter(path, {"adversary": "l2"}) as writer:
        writer.write(row | {"eps": 0.25})
        writer.write(row | {"eps": 0.5})  # the same input at another eps: not a duplicate
    assert len(read_attacks(path)) == 2
    write_twice(path, 4)
    with pytest.raises(ValueError, match="input 0 at eps 0.5 appears 2 times"):
        read_attacks(path)
    with pytest.warns(UserWarning, match="input 0 at eps 0.5"):
        AttackWriter(path, {"adversary": "l2"}).close()
    assert read_attacks(path).columns["eps"].tolist() == [0.25, 0.5]


# -- item 2: a rejected command leaves nothing behind -------------------------------------------------------------
def test_attack_with_an_eps_out_of_range_names_the_range_and_writes_nothing(checkpoint, tmp_path, capsys):
    out = tmp_path / "res" / "big.tsv"
    line = one_line_error(capsys, "attack", checkpoint, "--out", out, "--eps", "1e308", "--no-progress")
    assert "eps must be one or more numbers in [0, 1e+12]" in line and "1e+308" in line
    assert not (tmp_path / "res").exists()


def test_certify_that_fails_before_its_first_row_removes_what_it_created(checkpoint, tmp_path, capsys):
    line = one_line_error(capsys, "certify", tmp_path / "missing.pt", "--out", tmp_path / "new" / "c.tsv", *CERT)
    assert "missing.pt" in line
    assert not (tmp_path / "new").exists()
    with pytest.raises(KeyboardInterrupt):
        certify(tmp_path / "a" / "b" / "c.tsv", Threshold(crash=True))
    assert not (tmp_path / "a").exists()


def test_a_refused_merge_leaves_no_folder(tmp_path, capsys):
    certify(tmp_path / "c.tsv")
    line = one_line_error(capsys, "merge", tmp_path / "new" / "m.tsv", tmp_path / "c.tsv", tmp_path / "c.tsv")
    assert "overlap" in line
    assert not (tmp_path / "new").exists()


def test_a_failed_run_keeps_files_and_folders_that_existed(tmp_path):
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    path = kept / "c.tsv"
    certify(path)
    text = path.read_text()
    path.write_text("\n".join(text.splitlines()[:4]) + "\n")  # two rows: a run interrupted earlier
    with pytest.raises(KeyboardInterrupt):
        certify(path, Threshold(crash=True))
    assert path.read_text() == "\n".join(text.splitlines()[:4]) + "\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(KeyboardInterrupt):
        certify(empty / "c.tsv", Threshold(crash=True))
    assert empty.is_dir() and not any(empty.iterdir())


def test_train_rejected_after_creating_its_folder_leaves_none(tmp_path, capsys):
    out = tmp_path / "runs" / "m"
    bad = ["train", "--sigma", "0.5", "--objective", "smoothadv", "--objective-param", "eps=-1", "--epochs", "1"]
    line = one_line_error(capsys, *bad, "--out", out, *FAST)
    assert "eps must be" in line
    assert not (tmp_path / "runs").exists()
    out.mkdir(parents=True)  # a folder that existed is kept, even empty
    one_line_error(capsys, *bad, "--out", out, *FAST)
    assert out.is_dir() and not any(out.iterdir())


# -- item 11: DSSN refuses the sampling settings it would ignore ---------------------------------------------
def test_dssn_certification_refuses_n0_n_and_alpha(tmp_path, capsys):
    model = tmp_path / "m"
    code, _, err = run_cli(capsys, "train", "--noise", "dssn", "--lam", "0.5", "--quantization", "16",
                           "--epochs", "1", "--out", model, *FAST)
    assert code == 0, err
    out = tmp_path / "res" / "c.tsv"
    base = ["certify", model / "checkpoint.pt", "--out", out, "--skip", "90", "--no-progress", "--threads", "1"]
    for given, words in ((["--n", "1000"], "--n does"), (["--alpha", "0.01"], "--alpha does"),
                         (["--n0", "10", "--n", "100", "--adaptive"], "--n0, --n, --adaptive do")):
        line = one_line_error(capsys, *base, *given)
        assert f"{words} not apply to a DSSN model" in line and "drop" in line
        assert not (tmp_path / "res").exists()
    code, stdout, err = run_cli(capsys, *base)
    assert code == 0 and "5 rows" in stdout, err
