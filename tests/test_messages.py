"""Issue 24, items 8 to 11: objective parameters capped and named, every checkpoint field validated on load,
a diverging run of any objective named by its epoch, ``experiment --param``, models reused from longer runs
said and recorded, one switch for every progress bar, and only uniform noise called bounded."""
from __future__ import annotations

import math
import re
from collections import OrderedDict

import pytest
import torch
import tqdm.std
from torch.utils.data import TensorDataset
from toys import run_cli as cli
from toys import train_with_cli

import wulff.distributions as D
from wulff.advisor import compare
from wulff.certify import read_results
from wulff.errors import NonFiniteError
from wulff.train import TrainConfig, build_model, load_dataset, train_smoothed
from wulff.train.objectives import OBJECTIVES, build_objective

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ["--batch-size", "512", "--no-progress", "--threads", "1"]


@pytest.fixture(autouse=True)
def _cache(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("WULFF_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "wulff-cache"))


def one_line_error(capsys, *args) -> str:
    code, _, err = cli(capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


# -- item 8: objective parameters have a ceiling, named in the error ---------------------------------------
def test_every_numeric_objective_parameter_has_a_ceiling_named_in_its_error():
    for name, info in OBJECTIVES.items():
        numeric = {k for k in info.defaults if k != "adversary"}
        assert set(info.maximum) == numeric, name
        extra = {"adversary": "l2"} if "adversary" in info.defaults else {}
        for key, top in info.maximum.items():
            build_objective(name, {key: top, **extra})  # the ceiling itself is allowed
            bound = re.escape(f"<= {top:g}; got '1e9'")
            with pytest.raises(ValueError, match=rf"objective {name}: {key} must be .*{bound}"):
                build_objective(name, {key: "1e9", **extra})


def test_macer_with_a_billion_draws_is_refused_before_training(tmp_path, capsys):
    line = one_line_error(capsys, "train", "--sigma", "0.5", "--objective", "macer", "--objective-param", "m=1e9",
                          "--out", tmp_path / "t", *FAST)
    assert "m must be > 0 and <= 1024" in line


# -- item 8: every checkpoint field is validated on load ---------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_with_cli(tmp_path_factory.mktemp("run"))


GAUSSIAN_65 = {"name": "Gaussian", "d": 65, "lam": 0.5, "params": {}}


@pytest.mark.parametrize("entry, value, field", [
    ("meta.num_classes", -1, "meta num_classes"),
    ("meta.num_classes", True, "meta num_classes"),
    ("meta.input_shape", [1, 8, -8], "meta input_shape"),
    ("meta.input_shape", [1, 16, 4], "meta input_shape"),  # 64 features too, but not the dataset's images
    ("meta.mean", ["x"], "meta mean"),
    ("meta.std", [0.0], "meta std"),
    ("meta.sigma", "abc", "meta sigma"),
    ("meta.dataset", "mnist", "meta dataset"),
    ("meta.distribution", GAUSSIAN_65, "meta distribution"),
    ("meta.objective", {"name": "macer", "params": {"m": 10 ** 9}}, "meta objective"),
    ("epoch", -1, "epoch"),
    ("model", "weights", "model"),
])
def test_certify_names_the_bad_checkpoint_field_in_one_line(trained, tmp_path, capsys, entry, value, field):
    state = torch.load(trained, weights_only=True)
    keys = entry.split(".")
    (state[keys[0]] if len(keys) == 2 else state)[keys[-1]] = value
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    line = one_line_error(capsys, "certify", bad, "--out", tmp_path / "r.tsv", "--n0", 8, "--n", 20,
                          "--max-inputs", 1, "--no-progress", "--threads", 1)
    assert str(bad) in line and f"checkpoint's {field}" in line, line
    assert not (tmp_path / "r.tsv").exists() or not read_results(tmp_path / "r.tsv").columns["index"].size


# -- item 9: a diverging run of any objective names its epoch ---------------------------------------------
class Broken(torch.nn.Module):
    """A network whose logits are all ``value`` (NaN or inf): a diverged model."""

    def __init__(self, info, value: float):
        super().__init__()
        self.inner = build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std)
        self.value = value

    def forward(self, x):
        return self.inner(x) * 0 + self.value


SMALL = {"smoothadv": {"m": 1, "steps": 1}, "direct": {"m": 2}, "consistency": {"m": 2}, "macer": {"m": 2}}


@pytest.mark.parametrize("value", [math.nan, math.inf])
@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_a_diverged_model_stops_every_objective_naming_the_epoch(objective, value):
    train_set, info = load_dataset("digits", "train")
    few = TensorDataset(*(t[:64] for t in train_set.tensors))
    q = D.Gaussian(info.d, sigma=0.5)
    torch.manual_seed(0)
    with pytest.raises(NonFiniteError, match="training diverged in epoch 1"):
        train_smoothed(Broken(info, value), q, few, TrainConfig(epochs=1, batch_size=32), progress=False,
                       objective=build_objective(objective, SMALL.get(objective), q))


def test_macer_diverging_under_a_huge_weight_says_training_diverged(tmp_path, capsys):
    line = one_line_error(capsys, "train", "--sigma", "0.5", "--epochs", "3", "--objective", "macer",
                          "--objective-param", "weight=1e6", "--objective-param", "m=4", "--out", tmp_path / "t",
                          *FAST)
    assert re.search(r"training diverged in epoch \d", line) and "rho" not in line, line


# -- item 10: experiment --param; longer-trained models reused are said and recorded -----------------------
TINY = ["--sigmas", "0.5", "--skip", "90", "--n0", "20", "--n", "200", "--no-progress", "--threads", "1",
        "--batch-size", "512"]


def test_experiment_passes_shape_parameters_and_names_the_model_by_them(tmp_path, capsys):
    line = one_line_error(capsys, "experiment", "table1", "--families", "Pareto", "--out", tmp_path, "--epochs",
                          "1", *TINY)
    assert "--param a=4" in line
    line = one_line_error(capsys, "experiment", "table1", "--families", "Pareto", "--param", "zz=1",
                          "--out", tmp_path, "--epochs", "1", *TINY)
    assert "zz" in line
    code, out, err = cli(capsys, "experiment", "table1", "--families", "Pareto", "--param", "a=4",
                         "--out", tmp_path, "--epochs", "1", *TINY)
    assert code == 0, err
    assert (tmp_path / "models" / "Pareto-a4-sigma0.5" / "checkpoint.pt").exists()
    assert read_results(tmp_path / "table1" / "Pareto-a4-sigma0.5.tsv").meta["params"] == {"a": 4.0}


def test_experiment_over_longer_models_says_it_reused_them_and_records_their_epochs(tmp_path, capsys):
    args = ["experiment", "table1", "--families", "Gaussian", "--out", tmp_path, *TINY]
    assert cli(capsys, *args, "--epochs", "2")[0] == 0
    (tmp_path / "table1" / "Gaussian-sigma0.5.tsv").unlink()
    code, out, err = cli(capsys, *args, "--epochs", "1")
    assert code == 0, err
    assert "already holds 2 epochs, more than the 1 asked" in out
    assert "2 epochs (reused: more than the 1 asked)" in out
    assert read_results(tmp_path / "table1" / "Gaussian-sigma0.5.tsv").meta["epochs"] == 2
    report = (tmp_path / "table1" / "report.md").read_text(encoding="utf-8")
    assert "Models trained for 1 epochs, except Gaussian sigma 0.5: 2 epochs" in report


def test_train_over_a_longer_run_says_it_reused_it(trained, tmp_path, capsys):
    code, out, err = cli(capsys, "train", "--sigma", "0.5", "--epochs", "1", "--out", trained.parent, *FAST)
    assert code == 0 and "already holds" not in out  # the same length: a plain finished run
    assert cli(capsys, "train", "--sigma", "0.5", "--epochs", "2", "--out", tmp_path, *FAST)[0] == 0
    code, out, err = cli(capsys, "train", "--sigma", "0.5", "--epochs", "1", "--out", tmp_path, *FAST)
    assert code == 0, err
    assert "already holds 2 epochs, more than the 1 asked: reused" in out
    assert "epoch 2 (reused: more than --epochs 1)" in out


# -- item 11: one switch for every progress bar; only uniform noise is bounded -----------------------------
def test_no_progress_turns_off_the_level_set_table_bar_too(tmp_path, monkeypatch, capsys):
    import wulff.cache
    import wulff.selector

    monkeypatch.setattr(wulff.cache, "_memory", {})  # build the Exp2 level-set table in this test
    monkeypatch.setattr(wulff.selector, "_memo", OrderedDict())
    monkeypatch.setenv("WULFF_CACHE_DIR", str(tmp_path / "cache"))
    bars = []
    original = tqdm.std.tqdm.__init__

    def recording(self, *args, **kwargs):
        original(self, *args, **kwargs)
        bars.append((str(kwargs.get("desc")), self.disable))

    monkeypatch.setattr(tqdm.std.tqdm, "__init__", recording)
    code, out, err = cli(capsys, "train", "--noise", "Exp2", "--sigma", "0.5", "--objective", "macer",
                         "--objective-param", "m=2", "--epochs", "1", "--out", tmp_path / "t", *FAST)
    assert code == 0, err
    assert any(desc.startswith("level-set table") for desc, _ in bars), bars
    assert all(disabled for _, disabled in bars), bars


def test_compare_calls_only_uniform_noise_bounded():
    story = compare("l1", 8, 0.5, families=["UniformCube", "Gaussian"], psi=["abs(t)**0.5"]).story()
    bounded = next(line for line in story.splitlines() if "bounded" in line and "capped" in line)
    assert "UniformCube" in bounded and "abs(t)**0.5" not in bounded
    finite = next(line for line in story.splitlines() if "abs(t)**0.5" in line and "rho = 1" in line)
    assert "unbounded" in finite


def test_one_switch_turns_off_every_bar_of_the_library(monkeypatch):
    import importlib

    from wulff import progress

    modules = [importlib.import_module(name) for name in (
        "wulff.train.trainer", "wulff.levelset.table", "wulff.certify.dataset", "wulff.certify.attack_dataset")]
    monkeypatch.setattr(progress, "_ENABLED", True)
    progress.set_enabled(False)
    for module in modules:
        with module.tqdm(total=3, disable=False) as bar:
            assert bar.disable, module.__name__
    progress.set_enabled(True)
    with modules[0].tqdm(total=3, disable=True) as bar:  # a caller's own "off" still holds
        assert bar.disable
