"""Plumbing between the library and the command line (issue 26, section 2): evaluation as a library
function (``wulff.load``), one smoothed-classifier interface for Monte Carlo and derandomized
smoothing, the noisy forward pass below certify and train, one argument block per concern."""
from __future__ import annotations

import ast
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from toys import HalfSpace, run_cli, train_digits_mlp

import wulff
import wulff.distributions as D
from wulff.certify import (
    Certification,
    DerandomizedSmoothed,
    Smoothed,
    SmoothedClassifier,
    certify_dataset,
    read_results,
)
from wulff.cli import build_parser
from wulff.splitting import SplittingNoise
from wulff.train import load_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(wulff.__file__).parent


@pytest.fixture(scope="module")
def gaussian_checkpoint(tmp_path_factory):
    return train_digits_mlp(tmp_path_factory.mktemp("gaussian"), D.Gaussian(64, sigma=0.25))


@pytest.fixture(scope="module")
def dssn_checkpoint(tmp_path_factory):
    return train_digits_mlp(tmp_path_factory.mktemp("dssn"), SplittingNoise(64, 0.5, quantization=16))


# -- evaluation as a library function ------------------------------------------------------------
def test_load_gives_a_smoothed_classifier_ready_to_certify_from_python(gaussian_checkpoint):
    smoothed = wulff.load(gaussian_checkpoint)  # a notebook's three lines
    test_set, info = wulff.certify.evaluation_data(smoothed)
    x, label = test_set[0]
    result = smoothed.certify(x, 8, 64, 0.01, 32, ("l2",), generator=torch.Generator().manual_seed(0))
    assert isinstance(smoothed, Smoothed) and repr(smoothed.q) == repr(D.Gaussian(64, sigma=0.25))
    assert smoothed.num_classes == info.num_classes == 10
    assert len(test_set) == len(load_dataset("digits", "test")[0])
    assert smoothed.meta["dataset"] == "digits" and smoothed.source == str(gaussian_checkpoint)
    assert not smoothed.model.training and smoothed.device == torch.device("cpu")
    assert isinstance(result, Certification) and result.n == 64 and set(result.radius) == {"l2"}
    assert wulff.certify.from_checkpoint is wulff.load


def test_load_with_another_noise_smooths_with_it(gaussian_checkpoint):
    laplace = D.Laplace(64, sigma=0.5)
    smoothed = wulff.load(gaussian_checkpoint, "cpu", noise=laplace, seed=3)
    assert smoothed.q is laplace and smoothed.meta["distribution"]["name"] == "Gaussian"
    with pytest.raises(ValueError, match="noise must have d = 64, the model's input features"):
        wulff.load(gaussian_checkpoint, noise=D.Laplace(63, sigma=0.5))
    with pytest.raises(TypeError, match="noise must be a wulff.distributions.Distribution or a"):
        wulff.load(gaussian_checkpoint, noise="Laplace")


def test_load_of_a_dssn_checkpoint_gives_the_derandomized_classifier(dssn_checkpoint):
    smoothed = wulff.load(dssn_checkpoint, autocast=torch.bfloat16)
    test_set, _ = wulff.certify.evaluation_data(smoothed, "test")
    result = smoothed.certify(test_set[0][0], ("l1",))
    assert isinstance(smoothed, DerandomizedSmoothed) and smoothed.deterministic
    assert smoothed.autocast == torch.bfloat16 and result.n == smoothed.q.offsets == 16


def test_evaluation_data_needs_a_loaded_classifier():
    smoothed = Smoothed(HalfSpace(0.0), D.Gaussian(2, sigma=1.0), 2)
    with pytest.raises(ValueError, match="smoothed must come from wulff.load"):
        wulff.certify.evaluation_data(smoothed)


def test_wulff_certify_and_attack_load_through_the_library(gaussian_checkpoint, tmp_path, capsys, monkeypatch):
    import wulff.certify.loading as loading

    calls = []
    original = loading.from_checkpoint
    monkeypatch.setattr(loading, "from_checkpoint", lambda *a, **k: calls.append(a) or original(*a, **k))
    code, _, err = run_cli(capsys, "certify", gaussian_checkpoint, "--out", tmp_path / "c.tsv", "--n0", 4,
                           "--n", 32, "--batch-size", 32, "--max-inputs", 1, "--no-progress")
    assert code == 0, err
    code, _, err = run_cli(capsys, "attack", gaussian_checkpoint, "--out", tmp_path / "a.tsv", "--eps", 0.1,
                           "--steps", 1, "--samples", 2, "--n", 16, "--max-inputs", 1, "--no-progress")
    assert code == 0, err
    assert [str(a[0]) for a in calls] == [str(gaussian_checkpoint)] * 2


# -- one smoothed-classifier interface -----------------------------------------------------------
def test_both_smoothed_classifiers_implement_one_interface():
    assert issubclass(Smoothed, SmoothedClassifier) and issubclass(DerandomizedSmoothed, SmoothedClassifier)
    assert (Smoothed.deterministic, DerandomizedSmoothed.deterministic) == (False, True)
    for shared in ("_vote", "_classify", "_autocast", "_evaluation", "_check_input", "__repr__"):
        redefined = [cls.__name__ for cls in (Smoothed, DerandomizedSmoothed) if shared in vars(cls)]
        assert not redefined, f"{shared} is redefined by {redefined}"


class ExactHalfSpace(SmoothedClassifier):
    """A third implementation, built from the interface alone: the noiseless votes of the base model,
    certified with radius 0 (a toy; only what certify_dataset asks is provided)."""

    deterministic = True

    @staticmethod
    def _check_noise(noise) -> None:
        assert isinstance(noise, D.Distribution)

    def _copies(self, x, start, size, generator):
        return x.unsqueeze(0).expand(size, *x.shape)

    def check_sampling(self, n0, n, alpha, batch_size, adaptive):
        return 0, 1, 0.0, batch_size

    def certify_input(self, x, n0, n, alpha, batch_size, adversaries, *, adaptive=False, radii=None,
                      generator=None):
        counts = self._vote(self._check_input(x), 1, 1)
        top = int(np.argmax(counts))
        return Certification(top, 1.0, {a: 0.0 for a in adversaries}, 1, 1), 1

    def row_extras(self, result):
        return {"closed": 1}

    def result_columns(self, adversaries, out):
        from wulff.certify.results import columns_for

        return columns_for(adversaries) + ["closed"]


def test_certify_dataset_asks_the_interface_not_the_type(tmp_path):
    smoothed = ExactHalfSpace(HalfSpace(0.5), D.Gaussian(2, sigma=1.0), 2)
    data = [(torch.tensor([0.0, 0.0]), 0), (torch.tensor([1.0, 0.0]), 1), (torch.tensor([0.9, 0.0]), 0)]
    results = certify_dataset(smoothed, data, tmp_path / "r.tsv", batch_size=4, adversaries=("l2",),
                              progress=False)
    assert list(results.columns["prediction"]) == [0, 1, 1] and list(results.correct) == [True, True, False]
    assert list(results.columns["closed"]) == [1, 1, 1] and list(results.samples) == [1, 1, 1]
    assert read_results(tmp_path / "r.tsv").meta["deterministic"] is True


def test_derandomized_votes_keep_their_checks_through_the_shared_loop():
    class NaNModel(torch.nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 2), float("nan"))

    model = NaNModel().train()
    smoothed = DerandomizedSmoothed(model, SplittingNoise(2, 0.5, quantization=4), 2)
    with pytest.raises(wulff.errors.NonFiniteError, match="on transformed inputs"):
        smoothed.class_counts(torch.tensor([0.25, 0.5]))
    assert model.training  # restored after the eval-mode forward passes
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        DerandomizedSmoothed(model, SplittingNoise(2, 0.5, quantization=4), 1)


# -- the argument blocks -------------------------------------------------------------------------
def _cli_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_subcommand_borrows_from_another():
    borrowed = {path.name: sorted(m for m in _cli_imports(path) if m.startswith("wulff.cli.cmd_"))
                for path in (ROOT / "cli").glob("cmd_*.py")}
    assert not any(borrowed.values()), f"sideways imports between subcommands: {borrowed}"


def _options(command: str) -> dict:
    """Option string -> argparse action of the subcommand ``command``."""
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    return {option: action for action in sub._actions for option in action.option_strings}


SHARED = {
    ("certify", "attack"): ("--data-dir", "--split", "--batch-size", "--skip", "--seed", "--max-inputs",
                            "--device", "--threads", "--autocast", "--channels-last", "--no-progress"),
    ("train", "certify", "attack", "experiment"): ("--device", "--threads", "--no-progress"),
}


@pytest.mark.parametrize("commands", list(SHARED))
def test_shared_options_are_declared_once(commands):
    parsers = {command: _options(command) for command in commands}
    for option in SHARED[commands]:
        declared = {(type(p[option]).__name__, p[option].type, repr(p[option].default), p[option].choices,
                     str(p[option].help).replace(command, "VERB")) for command, p in parsers.items()}
        assert len(declared) == 1, f"{option} differs between {', '.join(commands)}: {declared}"


def test_parse_params_lives_at_the_command_line_and_spec_has_no_dead_wrappers():
    from wulff.cli.arguments import parse_params
    from wulff.train import spec

    assert parse_params(["k=2", "j = 0"]) == {"k": 2.0, "j": 0.0}
    with pytest.raises(wulff.errors.UserError, match="must look like name=value"):
        parse_params(["k2"])
    dead = [name for name in ("family_constructor", "canonical_name", "check_params", "parse_params")
            if hasattr(spec, name)]
    assert not dead, f"wulff.train.spec still defines {dead}"


# -- drift -----------------------------------------------------------------------------------------
def test_compare_doc_states_the_adaptive_procedures_share_of_alpha_on_its_last_look():
    from wulff.certify.adaptive import FINAL_SHARE

    text = " ".join((ROOT.parent / "docs" / "compare.md").read_text().split())
    stated = re.search(r"spends (\d+/\d+) of alpha on its last look", text)
    assert stated and Fraction(stated.group(1)) == Fraction(FINAL_SHARE)
