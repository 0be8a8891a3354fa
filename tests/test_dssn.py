"""DSSN (Levine & Feizi, 2021): the splitting transform and its deterministic l1 certificate.

The reference here is independent of wulff/splitting.py and wulff/certify/derandomized.py: it
evaluates the *continuous* definition p_c(x) = P_s(f(T(x, s)) = c), s ~ U[0, 2 lam), with
T_i(x, s) = 2 lam ceil((x_i - s_i) / (2 lam)) + (floor(s_i Q) + 1/2) / Q - lam and
s_i = (s + v_i / Q) mod 2 lam (v the noise's fixed phases), in exact rational arithmetic, for
inputs on a grid of step 1/(Q K) (K = 1: the data grid; K = 2: real-valued
perturbations between its points). On such inputs T is constant in s between consecutive multiples
of 1/(Q K), so averaging over the midpoints of those cells is the exact integral.
"""
from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import numpy as np
import pytest
import torch

from wulff.certify import DerandomizedSmoothed, Smoothed, certify_dataset, dssn_certification, read_results
from wulff.certify.analysis import report
from wulff.certify.derandomized import dssn_radius, smoothed_classifier
from wulff.errors import ParameterError, UserError
from wulff.splitting import SplittingNoise, phases

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- the independent reference -------------------------------------------------------------------
def reference_keys(x: tuple[Fraction, ...], s: Fraction, q: int, n: int, v) -> tuple[int, ...]:
    """T(x, s) from its continuous definition, as the integers k with T_i = (k_i + 1/2 - n/2) / q."""
    two_lam = Fraction(n, q)
    keys = []
    for xi, vi in zip(x, v):
        si = (s + Fraction(vi, q)) % two_lam
        t = two_lam * math.ceil((xi - si) / two_lam) + (math.floor(si * q) + Fraction(1, 2)) / q - two_lam / 2
        k = t * q - Fraction(1, 2) + Fraction(n, 2)
        assert k.denominator == 1  # T always lands on the lattice of cell centres
        keys.append(int(k))
    return tuple(keys)


def reference_probabilities(f, x: tuple[Fraction, ...], q: int, n: int, k: int, classes: int,
                            v) -> list[Fraction]:
    """p_c(x) for inputs on the grid 1/(q k): the average over the n k cells of s of width 1/(q k)."""
    votes = [0] * classes
    for t in range(n * k):
        votes[f(reference_keys(x, Fraction(2 * t + 1, 2 * q * k), q, n, v))] += 1
    return [Fraction(v, n * k) for v in votes]


def smoothed_class(probabilities) -> int:
    """g: the largest probability, ties to the smallest index."""
    best = max(probabilities)
    return probabilities.index(best)


class KeyClassifier(torch.nn.Module):
    """A base classifier defined on the lattice keys of its input (so the reference and the torch
    evaluation agree exactly): one-hot logits of f(keys)."""

    def __init__(self, f, q: int, n: int, classes: int):
        super().__init__()
        self.f, self.q, self.n, self.classes = f, q, n, classes

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        keys = torch.round(t.double() * self.q - 0.5 + self.n / 2).long().reshape(t.shape[0], -1)
        labels = [self.f(tuple(int(v) for v in row)) for row in keys]
        return torch.nn.functional.one_hot(torch.tensor(labels), self.classes).float()


def random_classifier(rng: random.Random, d: int, classes: int):
    """Either argmax of random affine functions of the keys (large smooth regions) or a random lookup
    table on the keys (modulo a small period) that favours one class."""
    if rng.random() < 0.5:
        weights = [[rng.gauss(0, 1) for _ in range(d)] for _ in range(classes)]
        bias = [rng.gauss(0, 3) for _ in range(classes)]

        def affine(keys):
            scores = [sum(w * k for w, k in zip(row, keys)) + b for row, b in zip(weights, bias)]
            return scores.index(max(scores))
        return affine
    period = rng.randint(3, 7)
    favourite = rng.randrange(classes)
    table = {}

    def lookup(keys):
        key = tuple(k % period for k in keys)
        if key not in table:
            table[key] = favourite if rng.random() < 0.75 else rng.randrange(classes)
        return table[key]
    return lookup


def l1_ball(d: int, steps: int):
    """Every integer vector e in Z^d with ||e||_1 <= steps."""
    for e in itertools.product(range(-steps, steps + 1), repeat=d):
        if sum(map(abs, e)) <= steps:
            yield e


# -- exactness of the N offsets --------------------------------------------------------------------
@pytest.mark.parametrize("q, n", [(4, 2), (4, 3), (3, 5), (5, 4)])
def test_the_n_offsets_give_the_exact_smoothed_probabilities(q, n):
    rng = random.Random(q * 100 + n)
    for _ in range(6):
        d, classes = rng.choice([2, 3]), 3
        f = random_classifier(rng, d, classes)
        a = [rng.randint(0, q) for _ in range(d)]
        noise = SplittingNoise(d, n / (2 * q), quantization=q, phase_seed=rng.randrange(2 ** 32))
        v = phases(d, n, noise.phase_seed)
        counts = DerandomizedSmoothed(KeyClassifier(f, q, n, classes), noise, classes).class_counts(
            torch.tensor(a, dtype=torch.float32) / q)
        x = tuple(Fraction(level, q) for level in a)
        for k in (1, 2):  # the finer integral over s agrees: the N-offset average is exact
            assert [Fraction(int(c), n) for c in counts] == reference_probabilities(f, x, q, n, k, classes, v)


def test_each_coordinate_sees_uniform_noise_on_the_cell_centres():
    for seed in (0, 1, 2 ** 32 - 1):
        noise = SplittingNoise(3, 0.5, quantization=4, phase_seed=seed)  # N = 4
        x = torch.tensor([0.0, 0.25, 1.0])
        delta = noise.all_offsets(x) - x
        for i in range(3):
            assert sorted(delta[:, i].tolist()) == [-0.375, -0.125, 0.125, 0.375]


def test_the_phases_are_a_fixed_hash_and_keep_pixels_apart():
    from wulff.splitting import _splitmix64

    assert _splitmix64(0) == 0xE220A8397B1DCDAF  # SplitMix64's published first output from state 0
    assert phases(4, 1000, 0) == [_splitmix64(i) % 1000 for i in range(4)]
    assert SplittingNoise(64, 1.0, quantization=16).params == {"quantization": 16, "phase_seed": 0}
    # lam = 1 on [0, 1]: without phases every offset would show at most two levels; with them,
    # pixels of one level get different noise
    x = torch.full((64,), 0.5)
    copies = SplittingNoise(64, 1.0, quantization=16).all_offsets(x)
    assert all(len(set(row.tolist())) > 8 for row in copies)


# -- soundness, exhaustively -----------------------------------------------------------------------
@pytest.mark.parametrize("q, n, d", [(4, 4, 2), (3, 5, 2), (4, 6, 3), (4, 3, 3)])
def test_no_perturbation_within_the_radius_changes_the_prediction(q, n, d):
    """Random base classifiers and inputs; every perturbation on the data grid (K = 1) and on the
    grid of half steps (K = 2, real-valued perturbations) with l1 norm below the certified radius
    keeps g(x') = g(x) as the unique top class."""
    rng = random.Random(1000 * q + 10 * n + d)
    classes = 3
    checked = certified_nonzero = 0
    for case in range(8):
        noise = SplittingNoise(d, n / (2 * q), quantization=q, phase_seed=case)
        v = phases(d, n, case)
        f = random_classifier(rng, d, classes)
        a = [rng.randint(0, q) for _ in range(d)]
        result = DerandomizedSmoothed(KeyClassifier(f, q, n, classes), noise, classes).certify(
            torch.tensor(a, dtype=torch.float64) / q, ("l1",))
        x = tuple(Fraction(level, q) for level in a)
        assert result.prediction == smoothed_class(reference_probabilities(f, x, q, n, 1, classes, v))
        radius = Fraction(result.radius["l1"])
        certified_nonzero += radius > 0
        for k in (1, 2):
            steps = math.ceil(radius * q * k) - 1  # ||e||_1 / (q k) < radius
            for e in l1_ball(d, max(steps, -1)) if steps >= 0 else ():
                moved = tuple(xi + Fraction(ei, q * k) for xi, ei in zip(x, e))
                p = reference_probabilities(f, moved, q, n, k, classes, v)
                top = p[result.prediction]
                assert all(top > pc for c, pc in enumerate(p) if c != result.prediction), (a, e, k, p)
                checked += 1
    assert certified_nonzero >= 3 and checked > 50  # the test exercised real radii


# -- tightness --------------------------------------------------------------------------------------
@pytest.mark.parametrize("q, n, c, k", [(4, 6, 1, 1), (4, 8, 2, 1), (4, 5, 1, 2), (3, 7, 2, 2)])
def test_the_radius_is_tight_for_a_neighbouring_runner_up(q, n, c, k):
    """f puts the c highest keys of x's first coordinate in class 0 (the runner-up B, which wins
    ties) and the rest in class 1 (A): p_A = (N - c) / N, p_B = c / N, radius R = (N - 2c) / (2Q).
    Moving x_1 up by exactly R (on the data grid when N is even, on the half-step grid when it is
    odd) ties A and B, so g changes: no larger radius is valid for every base classifier."""
    a = [1, 2]
    threshold = a[0] + n - c

    def f(keys):
        return 0 if keys[0] >= threshold else 1

    noise = SplittingNoise(2, n / (2 * q), quantization=q, phase_seed=7)
    v = phases(2, n, 7)
    result = DerandomizedSmoothed(KeyClassifier(f, q, n, 2), noise, 2).certify(torch.tensor(a) / q, ("l1",))
    assert result.prediction == 1 and result.top_count == n - c
    exact = Fraction(n - 2 * c, 2 * q)
    assert Fraction(result.radius["l1"]) == exact
    x = tuple(Fraction(level, q) for level in a)
    beyond = (x[0] + exact, x[1])
    assert (exact * q * k).denominator == 1  # the perturbation lies on the grid of step 1/(q k)
    p = reference_probabilities(f, beyond, q, n, k, 2, v)
    assert p[0] == p[1] == Fraction(1, 2) and smoothed_class(p) == 0
    # just inside, on the same grid, the prediction holds
    inside = (x[0] + exact - Fraction(1, q * k), x[1])
    assert smoothed_class(reference_probabilities(f, inside, q, n, k, 2, v)) == 1


def test_top_two_radius_beats_the_top_class_radius():
    """(n_A, n_B, n_C) = (5, 2, 1) of N = 8 offsets, Q = 4: R = lam (p_A - p_B) = 3/8 > 2 lam (p_A - 1/2)
    = 1/4, the radius uniform noise would certify from p_A alone."""
    noise = SplittingNoise(3, 1.0, quantization=4)
    result = dssn_certification(np.array([2, 5, 1]), noise, ("l1", "l2", "linf"))
    assert (result.prediction, result.top_count, result.n, result.rho_lower) == (1, 5, 8, 5 / 8)
    assert result.radius["l1"] == 0.375 > 2 * 1.0 * (5 / 8 - 1 / 2)
    assert result.radius["linf"] == pytest.approx(0.125) and result.radius["linf"] <= 0.375 / 3
    assert Fraction(result.radius["l2"]) ** 2 * 3 <= Fraction(3, 8) ** 2
    assert result.radius["l2"] == pytest.approx(0.375 / math.sqrt(3), rel=1e-15)


def test_ties_go_to_the_smallest_class_with_radius_zero():
    noise = SplittingNoise(2, 0.5, quantization=4)  # N = 4
    result = dssn_certification(np.array([0, 2, 2]), noise, ("l1",))
    assert result.prediction == 1 and result.radius == {"l1": 0.0}


def test_radii_are_rounded_down():
    rng = random.Random(5)
    for _ in range(300):
        q, d = rng.randint(1, 300), rng.randint(1, 5000)
        n = rng.randint(2, 2 * q * 3)
        top = rng.randint(n // 2 + 1, n)
        counts = np.array([top, n - top])
        noise = SplittingNoise(d, offsets=n, quantization=q)
        exact = Fraction(2 * top - n, 2 * q)
        assert Fraction(dssn_radius(counts, noise, "l1")) <= exact
        assert Fraction(dssn_radius(counts, noise, "linf")) <= exact / d
        assert Fraction(dssn_radius(counts, noise, "l2")) ** 2 * d <= exact ** 2
        assert dssn_radius(counts, noise, "l1") == pytest.approx(float(exact), rel=1e-15)


# -- arguments --------------------------------------------------------------------------------------
def test_bad_arguments_name_what_is_wrong():
    with pytest.raises(ParameterError, match="2 \\* lam \\* quantization must be a positive integer"):
        SplittingNoise(4, 0.3, quantization=16)
    with pytest.raises(ParameterError, match="quantization must be a positive integer"):
        SplittingNoise(4, 0.5, quantization=0)
    with pytest.raises(ParameterError, match="exactly one of lam= or offsets="):
        SplittingNoise(4, quantization=16)
    noise = SplittingNoise(2, 0.5, quantization=4)
    smoothed = DerandomizedSmoothed(torch.nn.Linear(2, 3), noise, 3)
    with pytest.raises(ValueError, match="on the grid of multiples of 1/quantization"):
        smoothed.certify(torch.tensor([0.1, 0.5]))
    with pytest.raises(ValueError, match="prod\\(shape\\) = d = 2"):
        smoothed.certify(torch.zeros(3))
    with pytest.raises(ValueError, match="sum to N"):
        dssn_certification(np.array([1, 1]), noise)
    with pytest.raises(TypeError, match="SplittingNoise"):
        DerandomizedSmoothed(torch.nn.Linear(2, 3), object(), 3)
    assert isinstance(smoothed_classifier(torch.nn.Linear(2, 3), noise, 3), DerandomizedSmoothed)
    assert SplittingNoise.from_spec(noise.spec()) == noise


# -- training, certify_dataset, report and the command line ----------------------------------------
@pytest.fixture(scope="module")
def digits():
    from wulff.train import load_dataset

    return load_dataset("digits", "train")[0], load_dataset("digits", "test")


def test_training_uses_the_transform_and_the_checkpoint_rebuilds_it(digits, tmp_path):
    from wulff.train import TrainConfig, build_model, load_trained, noisy_loss, train_smoothed, training_meta

    train_set, (test_set, info) = digits
    noise = SplittingNoise(info.d, 0.5, quantization=16)
    x, y = train_set.tensors[0][:8], train_set.tensors[1][:8]
    seen = []
    noisy_loss(lambda z: seen.append(z) or z.flatten(1)[:, :10], noise, x, y, torch.Generator().manual_seed(0))
    delta = (seen[0] - x) * 16  # offsets of (m + 1/2 - N/2) / Q with m in 0 .. N-1, N = 16
    assert torch.all((delta - 0.5).remainder(1).abs() < 1e-4) and delta.abs().max() <= 7.5 + 1e-4
    torch.manual_seed(0)
    model = build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std)
    ckpt = tmp_path / "checkpoint.pt"
    config = TrainConfig(epochs=1, batch_size=64, lr=0.05)
    train_smoothed(model, noise, train_set, config, checkpoint=ckpt, meta=training_meta("mlp", info, noise),
                   progress=False)
    loaded, rebuilt, _ = load_trained(ckpt)
    assert rebuilt == noise
    other = SplittingNoise(info.d, 0.25, quantization=16)
    with pytest.raises(UserError, match="other settings"):
        train_smoothed(model, other, train_set, TrainConfig(epochs=2, batch_size=64, lr=0.05), checkpoint=ckpt,
                       meta=training_meta("mlp", info, other), progress=False)


def test_certify_dataset_and_report_take_dssn_beside_monte_carlo(digits, tmp_path):
    import wulff.distributions as D
    from wulff.train import build_model

    _, (test_set, info) = digits
    torch.manual_seed(0)
    model = build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std).eval()
    noise = SplittingNoise(info.d, 0.5, quantization=16)
    exact = certify_dataset(DerandomizedSmoothed(model, noise, 10), test_set, tmp_path / "dssn.tsv",
                            batch_size=64, adversaries=("l1",), skip=90, progress=False, meta={"split": "test"})
    assert exact.meta["deterministic"] and (exact.meta["n"], exact.meta["alpha"]) == (16, 0.0)
    assert list(exact.samples) == [16] * 5
    x0 = test_set[0][0]
    direct = DerandomizedSmoothed(model, noise, 10).certify(x0, ("l1",))
    assert exact.columns["radius_l1"][0] == direct.radius["l1"]
    assert exact.columns["prediction"][0] == direct.prediction
    with pytest.raises(ValueError, match="other settings"):
        certify_dataset(DerandomizedSmoothed(model, SplittingNoise(info.d, 0.25, quantization=16), 10), test_set,
                        tmp_path / "dssn.tsv", batch_size=64, adversaries=("l1",), skip=90, progress=False,
                        meta={"split": "test"})
    with pytest.raises(ValueError, match="adaptive"):
        certify_dataset(DerandomizedSmoothed(model, noise, 10), test_set, tmp_path / "a.tsv", batch_size=64,
                        skip=90, adaptive=True, progress=False)
    certify_dataset(Smoothed(model, D.UniformCube(info.d, lam=0.5), 10), test_set, tmp_path / "cube.tsv", n0=8,
                    n=64, alpha=0.01, batch_size=64, adversaries=("l1",), skip=90, progress=False,
                    meta={"split": "test"})
    warnings_ = []
    table = report([read_results(tmp_path / "dssn.tsv"), read_results(tmp_path / "cube.tsv")], "l1",
                   warn=warnings_.append)
    assert not warnings_
    assert "DSSN(phase_seed=0, quantization=16)" in table and "UniformCube" in table
    assert "deterministic: the 2 lam Q = 16 offsets" in table


def test_cli_trains_and_certifies_dssn(tmp_path, capsys):
    from toys import run_cli

    code, out, err = run_cli(capsys, "train", "--noise", "dssn", "--lam", "0.5", "--quantization", "16",
                             "--epochs", "1", "--out", tmp_path / "m", "--no-progress")
    assert code == 0, err
    assert "DSSN(d=64, lam=0.5, quantization=16)" in out
    code, out, err = run_cli(capsys, "certify", tmp_path / "m" / "checkpoint.pt", "--out", tmp_path / "c.tsv",
                             "--skip", "50", "--no-progress")
    assert code == 0, err
    results = read_results(tmp_path / "c.tsv")
    assert results.meta["distribution"] == "DSSN" and list(results.samples) == [16] * 9
    code, out, err = run_cli(capsys, "train", "--noise", "DSSN", "--lam", "0.3", "--quantization", "16",
                             "--out", tmp_path / "m2", "--no-progress")
    assert code == 2 and "2 * lam * quantization must be a positive integer" in err
    code, out, err = run_cli(capsys, "train", "--noise", "Gaussian", "--quantization", "16", "--sigma", "0.5",
                             "--out", tmp_path / "m3", "--no-progress")
    assert code == 2 and "--quantization is a setting of DSSN noise only" in err
    code, out, err = run_cli(capsys, "train", "--noise", "Laplace", "--out", tmp_path / "m4", "--no-progress")
    assert code == 2 and "--sigma is required" in err


def test_the_example_runs_and_certifies(capsys):
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "examples" / "dssn_digits.py"), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and all("(exact, 16 forward passes)" in line for line in lines)
    radii = [float(line.rsplit(" ", 1)[1]) for line in lines]
    assert all(0.0 <= r <= 0.5 for r in radii) and max(radii) > 0.0


def test_demo_dssn_is_opt_in_and_shares_the_table(tmp_path, capsys):
    from toys import run_cli

    code, out, err = run_cli(capsys, "demo", "--quick", "--dssn", "--distributions", "UniformCube", "--skip", "45",
                             "--out", tmp_path / "demo", "--no-progress")
    assert code == 0, err
    assert "| UniformCube |" in out and "| DSSN(phase_seed=0, quantization=16) |" in out
    results = read_results(tmp_path / "demo" / "DSSN-lam0.875" / "certify_l1.tsv")  # sqrt(3) 0.5 -> 28/32
    assert results.meta["deterministic"] and list(results.samples) == [28] * 10


def test_the_python_block_of_docs_dssn_runs():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "dssn.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    scope: dict = {}
    exec(compile(blocks[0], "docs/dssn.md", "exec"), scope)
    cert = scope["cert"]
    assert cert.n == 16 and 0 <= cert.radius["l1"] <= 0.5 and cert.rho_lower * 16 == cert.top_count


def test_batches_of_offsets_give_the_same_votes():
    noise = SplittingNoise(4, offsets=7, quantization=5)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    x = torch.tensor([0.0, 0.4, 1.0, 0.6])
    smoothed = DerandomizedSmoothed(model, noise, 3)
    counts = smoothed.class_counts(x, batch_size=1000)
    assert counts.sum() == 7
    for size in (1, 2, 3, 7):
        assert list(smoothed.class_counts(x, batch_size=size)) == list(counts)
    with torch.no_grad():
        expected = np.bincount(model(noise.all_offsets(x)).argmax(1).numpy(), minlength=3)
    assert list(counts) == list(expected)


# -- at the edges of the grid (issue 24, items 12-14) ----------------------------------------------
def grid_points_near(x: tuple[Fraction, ...], radius: Fraction, q: int, k: int, *, closed: bool):
    """Every point x' of the grid of step 1/(q k) with ||x' - x||_1 < radius (<= radius when
    ``closed``), for any rational x (on that grid or not), with its exact distance."""
    centre = [round(xi * q * k) for xi in x]
    on_grid = all(Fraction(c, q * k) == xi for c, xi in zip(centre, x))
    reach = math.ceil(radius * q * k) + (0 if on_grid else len(x))
    for e in l1_ball(len(x), reach):
        moved = tuple(Fraction(c + ei, q * k) for c, ei in zip(centre, e))
        distance = sum(abs(m - xi) for m, xi in zip(moved, x))
        if distance < radius or closed and distance == radius:
            yield moved, distance


def assert_certificate_holds(f, result, x: tuple[Fraction, ...], q: int, n: int, classes: int, v,
                             ks=(1, 2)) -> int:
    """Brute force over the grid shifts: g keeps result.prediction, as the unique top class, at every
    x' strictly inside the certified l1 radius of the real point x, and (ties to the smallest index)
    on the sphere too when the result claims its closed ball. Returns how many x' on the sphere."""
    radius, top = Fraction(result.radius["l1"]), result.prediction
    closed = getattr(result, "closed_ball", False)
    on_sphere = 0
    for k in ks:
        for moved, distance in grid_points_near(x, radius, q, k, closed=closed):
            p = reference_probabilities(f, moved, q, n, k, classes, v)
            if distance < radius:
                assert all(p[top] > pc for c, pc in enumerate(p) if c != top), (x, moved, p, radius)
            else:
                assert smoothed_class(p) == top, (x, moved, p, radius)
                on_sphere += 1
    return on_sphere


def threshold_classifier(threshold: int, low: int, high: int):
    """f = ``high`` where the first coordinate's key is >= threshold, else ``low``."""
    return lambda keys: high if keys[0] >= threshold else low


def test_an_input_off_the_grid_is_refused_not_certified_as_its_grid_point():
    """Item 12: Q = 4, lam = 1 (N = 8), a threshold classifier that puts the 2 highest of 8 keys of
    x_1 = 1/2 in class 0: at 1/2 the certified radius is R = (6 - 2) / 8 = 1/2, and x' = 1 (a tie
    that class 0 wins) changes g. The input 1/2 + 0.5e-4/4, inside the old snapping tolerance, lies
    only 0.4999875 from x' = 1: certifying it as its grid point at radius 1/2 would be wrong. Every
    input off the grid is refused; one on it is certified, soundly (brute force over grid shifts)."""
    q, n = 4, 8
    f = threshold_classifier(2 + n - 2, low=1, high=0)
    noise = SplittingNoise(1, offsets=n, quantization=q, phase_seed=3)
    v = phases(1, n, 3)
    smoothed = DerandomizedSmoothed(KeyClassifier(f, q, n, 2), noise, 2)
    on_grid = smoothed.certify(torch.tensor([0.5], dtype=torch.float64), ("l1",))
    assert Fraction(on_grid.radius["l1"]) == Fraction(1, 2)
    assert_certificate_holds(f, on_grid, (Fraction(1, 2),), q, n, 2, v)
    near = [0.5 + 0.5e-4 / q, 0.5 - 0.5e-4 / q, 0.5 + 0.99e-4 / q,
            math.nextafter(0.5, 1.0), math.nextafter(0.5, 0.0)]
    refused = 0
    for value in near:
        try:
            result = smoothed.certify(torch.tensor([value], dtype=torch.float64), ("l1",))
        except ValueError as error:
            assert "grid" in str(error) and repr(value) in str(error)
            refused += 1
            continue
        assert_certificate_holds(f, result, (Fraction(value),), q, n, 2, v, ks=(1,))
    assert refused == len(near)
    with pytest.raises(ValueError, match="float32 rounding of some k/4"):  # float32 too: off by one ulp
        smoothed.certify(torch.tensor([0.5]).nextafter(torch.tensor(1.0)))


def float32_levels_the_old_test_refused(q: int) -> list[int]:
    """Levels k whose float32 k / Q lies farther than 1e-4 / Q from k / Q (the old fixed tolerance)."""
    k = torch.arange(q + 1, dtype=torch.float64)
    scaled = (torch.arange(q + 1, dtype=torch.float32) / q).double() * q
    return [int(level) for level in k[(scaled - k).abs() > 1e-4]]


@pytest.mark.parametrize("q", [4095, 65535])
def test_float32_inputs_on_a_fine_grid_are_accepted_and_certified_exactly(q):
    """Item 13: 12- and 16-bit data in float32 (k / Q correctly rounded, as ToTensor-style division
    makes it): every level is read back as its own k, and a certificate there is the exact one
    (brute force over grid shifts). The float32 values next to the levels are refused."""
    noise = SplittingNoise(2, offsets=3, quantization=q, phase_seed=11)
    levels = torch.arange(q + 1, dtype=torch.float32) / q
    assert torch.equal(noise.grid_levels(levels), torch.arange(q + 1, dtype=torch.float64))
    hard = float32_levels_the_old_test_refused(q)
    assert len(hard) > 50  # the fixed 1e-4 tolerance refused these
    rng = random.Random(q)
    v = phases(2, 3, 11)
    for _ in range(4):
        a = [rng.choice(hard), rng.choice(hard)]
        f = random_classifier(rng, 2, 3)
        result = DerandomizedSmoothed(KeyClassifier(f, q, 3, 3), noise, 3).certify(
            torch.tensor(a, dtype=torch.float32) / q, ("l1",))
        x = tuple(Fraction(level, q) for level in a)
        p = reference_probabilities(f, x, q, 3, 1, 3, v)
        assert result.prediction == smoothed_class(p) and Fraction(result.top_count, 3) == p[result.prediction]
        assert_certificate_holds(f, result, x, q, 3, 3, v, ks=(1,))
    beside = (torch.tensor(hard[:20], dtype=torch.float32) / q).nextafter(torch.tensor(2.0))
    for value in beside:
        with pytest.raises(ValueError, match="grid"):
            noise.grid_levels(value.reshape(1))


def test_a_dtype_too_coarse_for_the_grid_is_refused():
    """bfloat16 (8 bits) cannot tell k / 4095 from (k + 1) / 4095: which level such an input means is
    unknown, so it is refused with a one-line reason; float16 at Q = 255 is fine."""
    noise = SplittingNoise(4, offsets=3, quantization=4095)
    with pytest.raises(ValueError, match="bfloat16 cannot tell the levels k/4095 of the grid apart"):
        noise.grid_levels(torch.tensor([0.0, 0.5, 0.75, 1.0]).to(torch.bfloat16) + 2 ** -9)
    fine = SplittingNoise(256, offsets=3, quantization=255)
    assert torch.equal(fine.grid_levels((torch.arange(256) / 255).half()), torch.arange(256, dtype=torch.float64))


@pytest.mark.parametrize("q, n, d", [(4, 4, 2), (3, 5, 2), (4, 6, 3)])
def test_the_closed_ball_is_certified_when_the_runners_up_have_larger_indices(q, n, d):
    """Item 14, soundness: where every class tied for runner-up has an index above the top class's,
    the result claims the closed ball, and brute force over grid shifts (data grid and half steps,
    on which the sphere ||x' - x||_1 = R always lies) finds g(x') = A on the sphere too."""
    rng = random.Random(7000 + 100 * q + 10 * n + d)
    classes = 3
    closed = opened = sphere = 0
    for case in range(14):
        noise = SplittingNoise(d, n / (2 * q), quantization=q, phase_seed=case)
        v = phases(d, n, case)
        f = random_classifier(rng, d, classes)
        a = [rng.randint(0, q) for _ in range(d)]
        result = DerandomizedSmoothed(KeyClassifier(f, q, n, classes), noise, classes).certify(
            torch.tensor(a, dtype=torch.float64) / q, ("l1", "l2", "linf"))
        x = tuple(Fraction(level, q) for level in a)
        p = reference_probabilities(f, x, q, n, 1, classes, v)
        top = result.prediction
        runner_up = max(pc for c, pc in enumerate(p) if c != top)
        expected = all(c > top for c, pc in enumerate(p) if c != top and pc == runner_up)
        assert result.closed_ball == expected
        closed += expected and result.radius["l1"] > 0
        opened += not expected
        sphere += assert_certificate_holds(f, result, x, q, n, classes, v) if expected else 0
    assert closed >= 2 and opened >= 2 and sphere > 10  # both kinds and real spheres were exercised


@pytest.mark.parametrize("q, n, c, k", [(4, 6, 1, 1), (4, 8, 2, 1), (4, 5, 1, 2), (3, 7, 2, 2)])
def test_the_closed_ball_is_tight_for_a_runner_up_with_a_larger_index(q, n, c, k):
    """Item 14, tightness: as in the open-ball tightness test, but the runner-up B = 1 has the larger
    index. Moving x_1 up by exactly R ties A and B and A keeps g (the closed ball holds, and the
    result says so); one grid step further B wins: no larger set is certified."""
    a = [1, 2]
    f = threshold_classifier(a[0] + n - c, low=0, high=1)
    noise = SplittingNoise(2, n / (2 * q), quantization=q, phase_seed=7)
    v = phases(2, n, 7)
    result = DerandomizedSmoothed(KeyClassifier(f, q, n, 2), noise, 2).certify(torch.tensor(a) / q, ("l1",))
    exact = Fraction(n - 2 * c, 2 * q)
    assert result.prediction == 0 and Fraction(result.radius["l1"]) == exact and result.closed_ball
    x = tuple(Fraction(level, q) for level in a)
    assert assert_certificate_holds(f, result, x, q, n, 2, v, ks=(k,)) >= 1
    at = reference_probabilities(f, (x[0] + exact, x[1]), q, n, k, 2, v)
    assert at[0] == at[1] and smoothed_class(at) == 0
    beyond = reference_probabilities(f, (x[0] + exact + Fraction(1, q * k), x[1]), q, n, k, 2, v)
    assert smoothed_class(beyond) == 1


def test_the_closed_ball_rule_on_counts():
    """Item 14 on vote counts directly: A = 0 with runner-up 1 (closed); A = 1 with runner-up 0 (open);
    runners-up tied on both sides of A (open); a full tie (R = 0: g(x) = A, closed)."""
    noise = SplittingNoise(3, 1.0, quantization=4)  # N = 8
    assert dssn_certification(np.array([5, 2, 1]), noise).closed_ball
    assert not dssn_certification(np.array([2, 5, 1]), noise).closed_ball
    assert not dssn_certification(np.array([1, 6, 1]), noise).closed_ball
    assert dssn_certification(np.array([0, 6, 1, 1]), noise).closed_ball
    tie = dssn_certification(np.array([4, 4]), SplittingNoise(3, 1.0, quantization=4))
    assert tie.closed_ball and tie.radius["l1"] == 0.0
    from wulff.certify.derandomized import closed_ball_certified

    assert closed_ball_certified([3, 1, 1]) and not closed_ball_certified([1, 3, 1])
    with pytest.raises(ValueError, match="counts must be a 1-D integer array"):
        closed_ball_certified([0.5, 0.5])
    with pytest.raises(ValueError, match="counts must be >= 0"):
        closed_ball_certified([3, -1])


def test_the_report_counts_a_closed_ball_at_its_own_radius(tmp_path):
    """Item 14 in result files: certify_dataset records the closed-ball flag per row, and certified
    accuracy (so `wulff report`) counts such a row at r = R, an open one only below R. A file written
    before the flag existed still reads and resumes, its rows counted as open balls."""
    from wulff.certify.analysis import certified_accuracy

    q, n = 4, 8
    noise = SplittingNoise(1, offsets=n, quantization=q)
    closed_f = threshold_classifier(2 + n - 2, low=0, high=1)  # at 1/2: A = 0, B = 1, R = 1/2, closed
    open_f = threshold_classifier(2 + n - 2, low=1, high=0)  # A = 1, B = 0: open
    dataset = [(torch.tensor([0.5]), 0), (torch.tensor([0.5]), 0)]
    cases = (("closed", closed_f, 0, [1.0, 1.0, 0.0]), ("open", open_f, 1, [1.0, 0.0, 0.0]))
    for name, f, label, expected in cases:
        rows = [(x, label) for x, _ in dataset]
        results = certify_dataset(DerandomizedSmoothed(KeyClassifier(f, q, n, 2), noise, 2), rows,
                                  tmp_path / f"{name}.tsv", batch_size=8, adversaries=("l1",), progress=False)
        assert list(results.columns["radius_l1"]) == [0.5, 0.5]
        assert list(certified_accuracy(results, [0.0, 0.5, 0.5 + 2 ** -20], "l1")) == expected
        table = report([results], "l1", radii=[0.5])
        assert table.splitlines()[2].split("|")[2].strip(" *") == ("100.0" if name == "closed" else "0.0")
    # an older file (no closed column) resumes in its own layout and counts as open balls
    old = tmp_path / "old.tsv"
    lines = (tmp_path / "closed.tsv").read_text().splitlines()[:3]
    old.write_text("\n".join(line.rsplit("\t", 1)[0] for line in lines) + "\n")
    resumed = certify_dataset(DerandomizedSmoothed(KeyClassifier(closed_f, q, n, 2), noise, 2),
                              [(x, 0) for x, _ in dataset], old, batch_size=8, adversaries=("l1",), progress=False)
    assert "closed" not in resumed.columns and len(resumed) == 2
    assert list(certified_accuracy(resumed, [0.5], "l1")) == [0.0]
