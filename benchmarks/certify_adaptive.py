"""Certification statistics side by side (issues 12 and 28): forward passes and certified accuracy at
every radius of Cohen et al.'s CERTIFY at a fixed n, the Bonferroni adaptive procedure (issue 12; the
default without a radius grid), the anytime-valid one (the default with a grid), and two published
procedures for a radius fixed in advance, re-implemented here from their papers' descriptions; the
two-class form against the p_A form; and the validity check (over-claims at alpha = 0.05 over many
repetitions, within the binomial limit).

    PYTHONPATH=. python benchmarks/certify_adaptive.py [--inputs 1000] [--digits-skip 3] [--no-digits]

Every procedure sees votes only: for a population with known class probabilities the votes are
multinomial draws (no model), for the digits model the class probabilities of each test input are
first estimated from 100,000 real forward passes and then drawn from (and the anytime procedure also
runs through ``certify_dataset(adaptive=True)`` on the real model, to show the same cost there).
n0 = 100, n = 100,000, alpha = 0.001 for certification; adaptive procedures get n_max = n0 + n.
Forward passes = noisy samples drawn, selection included.

The procedures:

* **Cohen** (CERTIFY): n0 votes choose the class, n = 100,000 fresh ones give the Clopper-Pearson bound.
* **bonferroni**: :func:`certify_sequential` with ``method="bonferroni"`` (looks at 500, 1000, 2000, ...;
  half of alpha on the last look, the other half split over the others).
* **anytime**: ``method="anytime"`` (the beta-binomial confidence sequence after every 10 % more
  samples, half of alpha; Clopper-Pearson at the last look with the other half).
* **Horvath** (Horvath et al., ICLR 2022, "Boosting randomized smoothing with variance reduced
  classifiers", adaptive sampling for a predetermined radius r): s = 3 stages of n_i = 1,000,
  10,000, 100,000 cumulative samples (after the n0 selection votes); at stage i the Clopper-Pearson
  interval at level alpha / s (Bonferroni over the stages) certifies r when its lower end reaches
  rho_needed(r), and stops without certifying when its upper end is below it; the last stage decides.
* **Voracek** (Voracek, 2024, "Treatment of statistical estimation problems in randomized smoothing",
  the same decision by a confidence sequence): looks at n_i = 100 * 2^i, each a Clopper-Pearson
  interval at level alpha_i = 6 alpha / (pi^2 i^2) (i = 1, 2, ...: a union bound over infinitely many
  looks, the stitching form of a confidence sequence), deciding as above, until n_max. (His randomized
  Clopper-Pearson interval is not re-implemented: the deterministic one is used by every procedure here.)

Both published procedures decide one radius; they are compared at fixed radii, against the anytime and
Bonferroni procedures given that radius alone as their grid (``radii=(r,)``).

Populations: (a) the synthetic population of issue 12 (10 classes; 20 % misclassified with
p ~ U[0, 0.5]; 80 % with p = 1 - 10^U(-3, -1)); (c) p_A drawn from Beta laws of other shapes: mostly
easy (Beta(8, 1) on [1/2, 1]), mostly hard (Beta(1, 4) on [1/2, 1]), bimodal (half near 1/2, half near
1); (d) three plausible classes (p_A ~ U[0.55, 0.95], the runner-up 30 % of the rest, the other 8
share 70 %), where the two-class form matters; (b) the digits demo model. Laplace noise in
d = 64, sigma = 0.5, against l1, for the populations; the digits model as trained by the demo
(Laplace sigma = 0.5).
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import wulff.distributions as D
from wulff import best_certificate
from wulff.certify.adaptive import certify_counts, certify_sequential, grid_thresholds
from wulff.certify.analysis import radius_grid
from wulff.certify.stats import clopper_pearson_lower, clopper_pearson_upper

N0, N, ALPHA, ADVERSARY = 100, 100_000, 0.001, "l1"
CLASSES = 10
CHECK_ALPHA, CHECK_RUNS = 0.05, 2000


# -- populations ----------------------------------------------------------------------------------------
def spread(p: np.ndarray, runner_share: float = 0.6) -> np.ndarray:
    """Class probabilities (len(p) x CLASSES): class 0 has p, class 1 ``runner_share`` of the rest,
    the other 8 share the remainder evenly."""
    probs = np.empty((len(p), CLASSES))
    probs[:, 0] = p
    probs[:, 1] = runner_share * (1 - p)
    probs[:, 2:] = ((1 - runner_share) * (1 - p) / (CLASSES - 2))[:, None]
    return probs


def synthetic(size: int, rng: np.random.Generator) -> np.ndarray:
    wrong = rng.random(size) < 0.2
    return spread(np.where(wrong, rng.uniform(0.0, 0.5, size), 1.0 - 10.0 ** rng.uniform(-3.0, -1.0, size)))


def shaped(a: float, b: float) -> Callable[[int, np.random.Generator], np.ndarray]:
    """p_A = 1/2 + Beta(a, b) / 2 (class 0 always the true one)."""
    return lambda size, rng: spread(0.5 + rng.beta(a, b, size) / 2)


def bimodal(size: int, rng: np.random.Generator) -> np.ndarray:
    near_half = rng.random(size) < 0.5
    return spread(np.where(near_half, 0.5 + rng.beta(1, 8, size) / 2, 1 - 10.0 ** rng.uniform(-4, -1.5, size)))


def three_class(size: int, rng: np.random.Generator) -> np.ndarray:
    return spread(rng.uniform(0.55, 0.95, size), runner_share=0.3)


POPULATIONS = {"(a) synthetic (issue 12)": synthetic, "(c) mostly easy, Beta(8, 1)": shaped(8, 1),
               "(c) mostly hard, Beta(1, 4)": shaped(1, 4), "(c) bimodal": bimodal,
               "(d) three plausible classes": three_class}


# -- procedures on votes --------------------------------------------------------------------------------
def cohen(probs: np.ndarray, rng, cert, two_class: bool = False) -> tuple[float, int, int]:
    """(radius, class, passes) of CERTIFY at n (abstention: radius 0, class -1)."""
    selection, counts = rng.multinomial(N0, probs), rng.multinomial(N, probs)
    out = certify_counts(selection, counts, ALPHA, {ADVERSARY: cert}, two_class=two_class)
    return (0.0, -1, N0 + N) if out.abstained else (out.radius[ADVERSARY], out.candidate, N0 + N)


def sequential(method: str, radii, two_class: bool = False):
    def run(probs: np.ndarray, rng, cert) -> tuple[float, int, int]:
        out = certify_sequential(lambda k: rng.multinomial(k, probs), N0 + N, ALPHA, {ADVERSARY: cert}, radii,
                                 method=method, two_class=two_class)
        return (0.0, -1, out.n) if out.abstained else (out.radius[ADVERSARY], out.candidate, out.n)
    return run


def staged_decision(looks, levels, threshold: float, probs: np.ndarray, rng) -> tuple[bool, int, int]:
    """The fixed-radius decision of Horvath et al. and Voracek: at each look the two-sided
    Clopper-Pearson interval at that look's level certifies (lower end >= threshold), gives up
    (upper end < threshold) or goes on; the last look decides. Returns (certified, class, passes)."""
    selection = rng.multinomial(N0, probs)
    candidate = int(np.argmax(selection))
    top = used = 0
    for n, level in zip(looks, levels):
        top += int(rng.binomial(n - used, probs[candidate]))
        used = n
        if clopper_pearson_lower(top, n, level) >= threshold:
            return True, candidate, N0 + n
        if clopper_pearson_upper(top, n, level) < threshold:
            break
    return False, candidate, N0 + used


HORVATH_LOOKS = (1_000, 10_000, N)


def horvath(threshold: float, probs: np.ndarray, rng, alpha: float = ALPHA) -> tuple[bool, int, int]:
    s = len(HORVATH_LOOKS)
    return staged_decision(HORVATH_LOOKS, (alpha / s,) * s, threshold, probs, rng)


def voracek_looks(alpha: float) -> tuple[tuple[int, ...], tuple[float, ...]]:
    looks = [100 * 2 ** i for i in range(1, 40) if 100 * 2 ** i < N] + [N]
    return tuple(looks), tuple(6 * alpha / (math.pi ** 2 * i ** 2) for i in range(1, len(looks) + 1))


def voracek(threshold: float, probs: np.ndarray, rng, alpha: float = ALPHA) -> tuple[bool, int, int]:
    return staged_decision(*voracek_looks(alpha), threshold, probs, rng)


# -- tables ---------------------------------------------------------------------------------------------
def accuracy(radius: np.ndarray, correct: np.ndarray, grid) -> np.ndarray:
    return np.array([np.mean(correct & (radius >= r)) for r in grid])


def run_population(population: np.ndarray, cert, procedures: dict, seed: int) -> dict:
    """{name: (radius, correct, passes)} of each procedure over the population (class 0 true)."""
    out = {}
    for name, procedure in procedures.items():
        rng = np.random.default_rng(seed)
        rows = [procedure(probs, rng, cert) for probs in population]
        radius, label, passes = (np.array(c) for c in zip(*rows))
        out[name] = (radius, label == 0, passes)
    return out


def grid_table(results: dict, grid, reference: str) -> list[str]:
    names = list(results)
    lines = ["| procedure | forward passes | x fewer than " + reference + " | "
             + " | ".join(f"r = {r:g}" for r in grid) + " |", "|---|---:|---:|" + "---:|" * len(grid)]
    base = results[reference][2].sum()
    for name in names:
        radius, correct, passes = results[name]
        acc = accuracy(radius, correct, grid)
        lines.append(f"| {name} | {passes.sum():,} | {base / passes.sum():.2f} | "
                     + " | ".join(f"{100 * a:.1f}" for a in acc) + " |")
    return lines


def fixed_radius_table(population: np.ndarray, cert, radii, seed: int) -> list[str]:
    """Each procedure deciding one radius r at a time: mean passes per input and certified accuracy at r."""
    lines = ["| radius | Cohen passes / acc. | Horvath | Voracek | bonferroni (radii=(r,)) "
             "| anytime (radii=(r,)) |", "|---:|---:|---:|---:|---:|---:|"]
    for r in radii:
        threshold = float(grid_thresholds(cert, [r])[0])
        cells = []
        for name in ("cohen", "horvath", "voracek", "bonferroni", "anytime"):
            rng = np.random.default_rng(seed)
            passes = hits = 0
            for probs in population:
                if name in ("horvath", "voracek"):
                    ok, label, used = (horvath if name == "horvath" else voracek)(threshold, probs, rng)
                    ok = ok and label == 0
                elif name == "cohen":
                    radius, label, used = cohen(probs, rng, cert)
                    ok = label == 0 and radius >= r
                else:
                    radius, label, used = sequential(name, (r,))(probs, rng, cert)
                    ok = label == 0 and radius >= r
                passes += used
                hits += bool(ok)
            cells.append(f"{passes / len(population):,.0f} / {100 * hits / len(population):.1f}")
        lines.append(f"| {r:g} | " + " | ".join(cells) + " |")
    return lines


def floor_passes(population: np.ndarray, cert, grid) -> float:
    """The information-theoretic floor: for each input, the least n at which the Clopper-Pearson bound at
    alpha, fed the expected count p n, reaches the threshold of the grid radius Cohen certifies in
    expectation (an oracle that knows p and looks once); abstentions cost nothing. Mean per input."""
    thresholds = grid_thresholds(cert, grid)
    total = 0
    for p in population[:, 0]:
        certified = int(np.count_nonzero(thresholds <= clopper_pearson_lower(int(round(p * N)), N, ALPHA)))
        if certified == 0:
            continue
        lo, hi = 0, N
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if clopper_pearson_lower(int(round(p * mid)), mid, ALPHA) >= thresholds[certified - 1]:
                hi = mid
            else:
                lo = mid
        total += N0 + hi
    return total / len(population)


def population_section(title: str, population: np.ndarray, cert, seed: int,
                       fixed_radii: bool) -> tuple[str, np.ndarray]:
    """The section's text and its radius grid."""
    began = time.perf_counter()
    plain = run_population(population, cert, {"Cohen": cohen}, seed)
    grid = radius_grid([_as_results(*plain["Cohen"])], ADVERSARY)
    procedures = {"Cohen": cohen, "bonferroni": sequential("bonferroni", tuple(grid)),
                  "anytime": sequential("anytime", tuple(grid)),
                  "bonferroni, no grid": sequential("bonferroni", None),
                  "anytime, no grid": sequential("anytime", None),
                  "Cohen two-class": lambda p, rng, c: cohen(p, rng, c, two_class=True),
                  "anytime two-class": sequential("anytime", tuple(grid), two_class=True)}
    results = run_population(population, cert, procedures, seed)
    lines = [f"### {title} ({len(population)} inputs)", "", "Certified accuracy (%) at each radius:", ""]
    lines += grid_table(results, grid, "bonferroni")
    ratio = results["bonferroni"][2].sum() / results["anytime"][2].sum()
    worst = np.max(np.abs(accuracy(*results["anytime"][:2], grid) - accuracy(*results["bonferroni"][:2], grid)))
    lines += ["", f"anytime vs bonferroni (grid): {ratio:.2f}x fewer forward passes, largest accuracy gap "
              f"{100 * worst:.1f} points; floor (oracle knowing p, Clopper-Pearson at alpha, one look): "
              f"{floor_passes(population, cert, grid):,.0f} passes per input, anytime "
              f"{results['anytime'][2].mean():,.0f}, bonferroni {results['bonferroni'][2].mean():,.0f}"]
    gain = accuracy(*results["anytime two-class"][:2], grid) - accuracy(*results["anytime"][:2], grid)
    lines += [f"two-class form (anytime): {' / '.join(f'{100 * g:+.1f}' for g in gain)} points at the radii "
              "above"]
    if fixed_radii:
        chosen = [r for r in grid[1:] if r > 0][:4]
        lines += ["", "Deciding one radius fixed in advance (mean passes per input / certified accuracy %):", ""]
        lines += fixed_radius_table(population, cert, chosen, seed)
    lines += ["", f"({time.perf_counter() - began:.0f} s)"]
    return "\n".join(lines), grid


def _as_results(radius, correct, passes):
    from wulff.certify.results import Results
    size = len(radius)
    return Results({"adversaries": [ADVERSARY]}, {
        "index": np.arange(size), "label": np.zeros(size, dtype=np.int64),
        "prediction": np.where(correct, 0, -1), "correct": correct.astype(np.int64),
        f"radius_{ADVERSARY}": np.asarray(radius, dtype=np.float64), "samples": np.asarray(passes)})


# -- the validity check ---------------------------------------------------------------------------------
def validity_section(seed: int) -> str:
    """Over-claims at alpha = 0.05: three-class slabs under Gaussian noise (class A on x_1 < a, B on
    x_1 >= a + 0.1, the rest between: the exact l2 radius is a + 0.05, Cohen's Theorem 1 being tight),
    a placed just above a grid threshold; CHECK_RUNS runs of every procedure."""
    from scipy.stats import norm

    sigma = 0.25
    cert = best_certificate(D.Gaussian(2, sigma=sigma), "l2")
    grid = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
    thresholds = grid_thresholds(cert, grid)
    rng = np.random.default_rng(seed)
    limit = CHECK_ALPHA + 3 * math.sqrt(CHECK_ALPHA * (1 - CHECK_ALPHA) / CHECK_RUNS)
    lines = [f"### Validity: over-claims at alpha = {CHECK_ALPHA} over {CHECK_RUNS} runs each "
             f"(binomial limit {100 * limit:.2f} %)", "", "| procedure | over-claims | rate (%) |",
             "|---|---:|---:|"]
    cases = []
    for i in range(CHECK_RUNS):
        a = sigma * norm.ppf(thresholds[i % len(grid)]) + 1e-4
        probs = np.array([norm.cdf(a / sigma), 1 - norm.cdf((a + 0.1) / sigma), 0.0])
        probs[2] = 1 - probs[:2].sum()
        cases.append((probs, a + 0.05, grid[i % len(grid)]))
    methods = {"bonferroni": ("bonferroni", False), "anytime": ("anytime", False),
               "anytime two-class": ("anytime", True)}
    for name, (method, two) in methods.items():
        wrong = 0
        for probs, exact, _ in cases:
            out = certify_sequential(lambda k, probs=probs: rng.multinomial(k, probs), 20_000, CHECK_ALPHA,
                                     {"l2": cert}, grid, method=method, two_class=two)
            wrong += not out.abstained and (out.candidate != 0 or out.radius["l2"] > exact)
        lines.append(f"| {name} | {wrong} | {100 * wrong / CHECK_RUNS:.2f} |")
    for name, decide in (("Horvath", horvath), ("Voracek", voracek)):
        wrong = 0
        for probs, exact, r in cases:
            ok, label, _ = decide(float(cert.inverse_radius(r)), probs, rng, CHECK_ALPHA)
            wrong += ok and (label != 0 or r > exact)
        lines.append(f"| {name} (radius r) | {wrong} | {100 * wrong / CHECK_RUNS:.2f} |")
    return "\n".join(lines)


# -- the digits model -----------------------------------------------------------------------------------
def digits_section(skip: int, epochs: int, seed: int, batch_size: int) -> str:
    import torch

    from wulff.certify import Smoothed, certify_dataset, read_results
    from wulff.train import TrainConfig, build_model, load_dataset, named_distribution, train_smoothed

    began = time.perf_counter()
    train_set, info = load_dataset("digits", "train")
    test_set, _ = load_dataset("digits", "test")
    q = named_distribution("Laplace", info.d, sigma=0.5)
    torch.manual_seed(seed)
    model = build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std)
    train_smoothed(model, q, train_set, TrainConfig(epochs=epochs, batch_size=64, lr=0.05, seed=seed),
                   progress=False, log=lambda *_: None)
    model.eval()
    smoothed = Smoothed(model, q, info.num_classes, seed=seed)
    indices = range(0, len(test_set), skip)
    probs = []
    for i in indices:  # each input's class probabilities, estimated from N real forward passes
        x, label = test_set[i]
        counts = smoothed.count_predictions(x, N, batch_size).astype(np.float64)
        order = [int(label)] + [c for c in range(info.num_classes) if c != int(label)]
        probs.append(counts[order] / counts.sum())  # the true class first, as the populations
    population = np.array(probs)
    estimated = time.perf_counter() - began
    cert = smoothed.certificate(ADVERSARY)
    title = (f"(b) digits MLP, Laplace sigma = 0.5, {epochs} epochs, every {skip}-th test input (votes drawn "
             f"from the probabilities of {N:,} real forward passes per input, {estimated:.0f} s)")
    section, grid = population_section(title, population, cert, seed, fixed_radii=False)
    with tempfile.TemporaryDirectory() as tmp:  # the anytime procedure on the real model
        start = time.perf_counter()
        certify_dataset(smoothed, test_set, Path(tmp) / "adaptive.tsv", n0=N0, n=N, alpha=ALPHA,
                        batch_size=batch_size, adversaries=(ADVERSARY,), skip=skip, seed=seed, progress=False,
                        adaptive=True, radii=list(grid))
        real = read_results(Path(tmp) / "adaptive.tsv")
    section += (f"\n\nThe anytime procedure through certify_dataset(adaptive=True) on the real model: "
                f"{int(real.samples.sum()):,} forward passes ({real.samples.mean():,.0f} per input, "
                f"{time.perf_counter() - start:.0f} s)")
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1000, help="size of each population (default 1000)")
    parser.add_argument("--digits-skip", type=int, default=3, help="certify every k-th digits test input")
    parser.add_argument("--epochs", type=int, default=30, help="digits training epochs (default 30, as the demo)")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--no-digits", action="store_true", help="only the populations")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    began = time.perf_counter()
    print(f"n0 = {N0}, n = {N:,}, alpha = {ALPHA}; adaptive procedures: n_max = n0 + n; "
          "grid = the radii `wulff report` would print for Cohen's run\n")
    cert = best_certificate(D.Laplace(64, sigma=0.5), ADVERSARY)
    rng = np.random.default_rng(args.seed)
    for i, (title, make) in enumerate(POPULATIONS.items()):
        text, _ = population_section(title + ", Laplace d = 64, sigma = 0.5, l1", make(args.inputs, rng), cert,
                                     args.seed + i, fixed_radii=i == 0)
        print(text + "\n", flush=True)
    print(validity_section(args.seed) + "\n", flush=True)
    if not args.no_digits:
        print(digits_section(args.digits_skip, args.epochs, args.seed, args.batch_size) + "\n")
    print(f"total time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
