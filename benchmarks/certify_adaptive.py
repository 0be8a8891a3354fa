"""Certification statistics side by side (issues 12 and 28): forward passes and certified accuracy at
every radius of Cohen et al.'s CERTIFY at a fixed n (with Clopper-Pearson's bound and with Voracek's
randomized one), the Bonferroni adaptive procedure (issue 12; the default without a radius grid), the
anytime-valid one (the default with a grid), and the published procedures of Horvath et al. (2022) and
Voracek (2024), re-implemented in benchmarks/published_procedures.py (its docstring says what was taken
from where and what was assumed); the two-class form against the p_A form; the frontier of the stopping
rules' DECISION_LEVEL; and the validity checks (over-claims at alpha = 0.05 over many repetitions,
within the binomial limit; the randomized Clopper-Pearson bound's coverage).

    PYTHONPATH=. python benchmarks/certify_adaptive.py [--quick] [--inputs 1000] [--digits-skip 3]
                                                       [--no-digits] [--no-frontier]

``--quick``: 200 inputs per population, no digits, fewer validity runs (under 2 minutes).

Every procedure sees votes only: for a population with known class probabilities the votes are
multinomial draws (no model), for the digits model the class probabilities of each test input are
first estimated from 100,000 real forward passes and then drawn from (and the anytime procedure also
runs through ``certify_dataset(adaptive=True)`` on the real model, to show the same cost there).
n0 = 100, n = 100,000, alpha = 0.001 for certification; adaptive procedures get n_max = n0 + n
(Horvath et al.'s stages are theirs: fresh n0 + 1,000, 10,000 and 125,000 votes). Forward passes =
noisy samples drawn, selection included.

The procedures:

* **Cohen** (CERTIFY): n0 votes choose the class, n = 100,000 fresh ones give the Clopper-Pearson bound;
  **Cohen, randomized CP**: the same votes with Voracek's randomized Clopper-Pearson bound.
* **bonferroni**: :func:`certify_sequential` with ``method="bonferroni"`` (looks at 500, 1000, 2000, ...;
  half of alpha on the last look, the other half split over the others), with the library's stopping
  rules as they are; **bonferroni, issue 12 rules**: the same with the rule added since ("next grid
  radius not worth its samples") turned off (``VALUE_PRICE = 0``): the procedure the issue's 1.5x target
  is measured against (the "x fewer" column's reference).
* **anytime**: ``method="anytime"`` (the beta-binomial confidence sequence after every 10 % more
  samples, half of alpha; Clopper-Pearson at the last look with the other half).
* **Horvath et al.**: adaptive sampling for a predetermined radius, three stages of fresh samples at
  alpha / 3 each, futility at beta = 1e-4 (their code's defaults).
* **Voracek, mixture**: his sequential test decided after every sample (Krichevsky-Trofimov mixture,
  alpha / 2 a side); **Voracek, union bound**: his union bound over geometric looks, each look's exact
  test randomized (his randomized Clopper-Pearson bound), alpha a side.

The published procedures decide one radius; with a grid they decide the grid radii one after another
(published_procedures.py: the same stages, or the same stream of votes, nested hypotheses). They are
compared with the grid and at fixed radii on every population (there against the anytime and
Bonferroni procedures given that radius alone as their grid, ``radii=(r,)``). All of them, and the
wulff procedures in these comparisons, use the p_A form (the two-class form is its own row).

Populations: (a) the synthetic population of issue 12 (10 classes; 20 % misclassified with
p ~ U[0, 0.5]; 80 % with p = 1 - 10^U(-3, -1)); (c) p_A drawn from Beta laws of other shapes: mostly
easy (Beta(8, 1) on [1/2, 1]), mostly hard (Beta(1, 4) on [1/2, 1]), bimodal (half near 1/2, half near
1); (d) three plausible classes (p_A ~ U[0.55, 0.95], the runner-up 30 % of the rest, the other 8
share 70 %), where the two-class form matters; (e) two plausible classes (the synthetic population's
p_A, the runner-up taking all the rest: the two-class form adds nothing); (b) the digits demo model.
Laplace noise in d = 64, sigma = 0.5, against l1, for the populations; the digits model as trained by the demo
(Laplace sigma = 0.5).

The frontier (on (a), and on (b) with the digits): forward passes against certified accuracy at every
radius as the stopping rules' DECISION_LEVEL (``wulff.certify.adaptive.DECISION_LEVEL``, patched for the
run) takes 1e-4 ... 0.4, for both wulff procedures, with VALUE_PRICE = 0 and at the library's value, with
where the passes go: the inputs grouped by
why they stopped, each group's passes beside its oracle floor (:func:`floor_per_input`), and what that
allows (:func:`floor_bound`: the ratio to the reference were every input that stopped before n_max
decided at its floor).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

import wulff.certify.adaptive as adaptive
import wulff.distributions as D
from benchmarks import published_procedures as published
from wulff import best_certificate
from wulff.certify.adaptive import certify_counts, certify_sequential, grid_thresholds
from wulff.certify.analysis import radius_grid

N0, N, ALPHA, ADVERSARY = 100, 100_000, 0.001, "l1"
CLASSES = 10
CHECK_ALPHA, CHECK_RUNS, CHECK_N_MAX = 0.05, 2000, 20_000
#: the frontier's decision levels, and the reference: the adaptive procedure of issue 12, (method,
#: DECISION_LEVEL, VALUE_PRICE), VALUE_PRICE = 0 turning off the later rule "next grid radius not worth
#: its samples"
DECISION_LEVELS = (1e-4, 1e-3, 0.01, 0.05, 0.2, 0.4)
REFERENCE = ("bonferroni", 0.05, 0.0)
ISSUE_12 = "bonferroni, issue 12 rules"
#: the targets of issue 28: 1.5x fewer passes than the reference within 0.5 points at every radius
TARGET_RATIO, TARGET_POINTS = 1.5, 0.5
#: the stop reasons of certify_sequential, grouped (every abstention reason starts with "abstain")
STOP_GROUPS = ("n_max", "next grid radius out of reach", "abstain ...", "every grid radius certified")


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


def two_class(size: int, rng: np.random.Generator) -> np.ndarray:
    """The synthetic population's p_A with the runner-up taking all the rest: the two-class form adds
    nothing, so the default's stopping rules are seen without its surplus."""
    return spread(synthetic(size, rng)[:, 0], runner_share=1.0)


POPULATIONS = {"(a) synthetic (issue 12)": synthetic, "(c) mostly easy, Beta(8, 1)": shaped(8, 1),
               "(c) mostly hard, Beta(1, 4)": shaped(1, 4), "(c) bimodal": bimodal,
               "(d) three plausible classes": three_class, "(e) two plausible classes": two_class}

#: one procedure's results over a population: (radius, correct, passes), per input
Results = tuple[np.ndarray, np.ndarray, np.ndarray]


# -- wulff's procedures on votes ------------------------------------------------------------------------
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


def run_population(population: np.ndarray, cert, procedures: dict, seed: int) -> dict[str, Results]:
    """{name: (radius, correct, passes)} of each per-input procedure over the population (class 0 true)."""
    out = {}
    for name, procedure in procedures.items():
        rng = np.random.default_rng(seed)
        rows = [procedure(probs, rng, cert) for probs in population]
        radius, label, passes = (np.array(c) for c in zip(*rows))
        out[name] = (radius, label == 0, passes)
    return out


def sequential_reasons(population: np.ndarray, cert, method: str, radii, seed: int) -> tuple[Results, np.ndarray]:
    """The sequential procedure's results (p_A form) and each input's stop reason, grouped (STOP_GROUPS)."""
    rng = np.random.default_rng(seed)
    radius, correct, passes, reason = [], [], [], []
    for probs in population:
        out = certify_sequential(lambda k, probs=probs: rng.multinomial(k, probs), N0 + N, ALPHA,
                                 {ADVERSARY: cert}, radii, method=method, two_class=False)
        radius.append(0.0 if out.abstained else out.radius[ADVERSARY])
        correct.append(not out.abstained and out.candidate == 0)
        passes.append(out.n)
        reason.append("abstain ..." if out.reason.startswith("abstain") else out.reason)
    return (np.array(radius), np.array(correct), np.array(passes)), np.array(reason, dtype=object)


# -- the published procedures (vectorized over the population) ------------------------------------------
def versus(results: dict[str, Results], name: str, grid) -> str:
    """One procedure against issue 12's: how many fewer passes, and the largest accuracy gap."""
    ratio = results[ISSUE_12][2].sum() / results[name][2].sum()
    return (f"{name} vs {ISSUE_12} (grid): {ratio:.2f}x fewer forward passes, largest accuracy gap "
            f"{largest_gap(results[name], results[ISSUE_12], grid):.1f} points")


def default_versus(results: dict[str, Results], grid) -> str:
    """The library's default with a grid (anytime, two-class scores, VALUE_PRICE as shipped) against
    issue 12's procedure: how many fewer passes, and its accuracy minus issue 12's at every radius."""
    ratio = results[ISSUE_12][2].sum() / results["anytime two-class"][2].sum()
    gap = accuracy(*results["anytime two-class"][:2], grid) - accuracy(*results[ISSUE_12][:2], grid)
    return (f"the default (anytime two-class) vs {ISSUE_12}: {ratio:.2f}x fewer forward passes; accuracy "
            f"difference {' / '.join(f'{100 * g:+.1f}' for g in gap)} points at the radii above "
            f"(smallest {100 * gap.min():+.1f})")


PUBLISHED_GRID = ("Horvath et al. (grid)", "Voracek, mixture (grid)", "Voracek, union bound + rand. CP (grid)")


def as_results(decisions: published.Decisions, grid) -> Results:
    return decisions.radius(grid), decisions.label == 0, decisions.passes


def published_results(population: np.ndarray, cert, grid, seed: int) -> dict[str, Results]:
    """Cohen with the randomized bound, Horvath et al. and both Voracek procedures on the grid."""
    thresholds = grid_thresholds(cert, grid)
    rng = np.random.default_rng(seed)
    label, rho = published.cohen_randomized(population, ALPHA, rng, N)
    radius = np.array([float(cert.radius(r)) if r > 0.5 else 0.0 for r in rho])
    out = {"Cohen, randomized CP": (radius, (rho > 0.5) & (label == 0), np.full(len(rho), N0 + N))}
    out["Horvath et al. (grid)"] = as_results(published.horvath(population, thresholds, ALPHA, rng), grid)
    for kind, name in zip(("mixture", "union"), PUBLISHED_GRID[1:]):
        out[name] = as_results(published.voracek(population, thresholds, ALPHA, rng, N, kind), grid)
    return out


PUBLISHED_FIXED = {"Horvath": lambda pop, t, rng: published.horvath(pop, t, ALPHA, rng),
                   "Voracek mixture": lambda pop, t, rng: published.voracek(pop, t, ALPHA, rng, N, "mixture"),
                   "Voracek union": lambda pop, t, rng: published.voracek(pop, t, ALPHA, rng, N, "union")}


# -- tables ---------------------------------------------------------------------------------------------
def accuracy(radius: np.ndarray, correct: np.ndarray, grid) -> np.ndarray:
    return np.array([np.mean(correct & (radius >= r)) for r in grid])


def grid_table(results: dict[str, Results], grid, reference: str) -> list[str]:
    lines = ["| procedure | forward passes | x fewer than " + reference + " | "
             + " | ".join(f"r = {r:g}" for r in grid) + " |", "|---|---:|---:|" + "---:|" * len(grid)]
    base = results[reference][2].sum()
    for name, (radius, correct, passes) in results.items():
        acc = accuracy(radius, correct, grid)
        lines.append(f"| {name} | {passes.sum():,} | {base / passes.sum():.2f} | "
                     + " | ".join(f"{100 * a:.1f}" for a in acc) + " |")
    return lines


def fixed_radius_table(population: np.ndarray, cert, radii, seed: int) -> list[str]:
    """Each procedure deciding one radius r at a time: mean passes per input / certified accuracy at r."""
    names = ["Cohen", "Horvath", "Voracek mixture", "Voracek union", "bonferroni", "anytime"]
    lines = ["| radius | " + " | ".join(n + (" (radii=(r,))" if n in ("bonferroni", "anytime") else "")
                                       for n in names) + " |", "|---:|" + "---:|" * len(names)]
    for r in radii:
        threshold = grid_thresholds(cert, [r])
        cells = []
        for name in names:
            rng = np.random.default_rng(seed)
            if name in PUBLISHED_FIXED:
                decided = PUBLISHED_FIXED[name](population, threshold, rng)
                hits, passes = (decided.level == 1) & (decided.label == 0), decided.passes
            else:
                procedure = cohen if name == "Cohen" else sequential(name, (r,))
                radius, correct, passes = run_population(population, cert, {name: procedure}, seed)[name]
                hits = correct & (radius >= r)
            cells.append(f"{passes.mean():,.0f} / {100 * hits.mean():.1f}")
        lines.append(f"| {r:g} | " + " | ".join(cells) + " |")
    return lines


def floor_per_input(population: np.ndarray, cert, grid) -> np.ndarray:
    """The information-theoretic floor of each input: the least n at which the Clopper-Pearson bound at
    alpha, fed the expected count p n, reaches the threshold of the grid radius Cohen certifies in
    expectation (an oracle that knows p and looks once), plus the n0 selection votes; 0 for an input
    Cohen would not certify (abstentions cost nothing)."""
    thresholds = grid_thresholds(cert, grid)
    p = population[:, 0]
    reached = published.level_of(published.clopper_pearson_lower_array(np.round(p * N), N, ALPHA), thresholds)
    target = thresholds[np.maximum(reached, 1) - 1]
    lo, hi = np.zeros(len(p)), np.full(len(p), float(N))
    while np.any(hi - lo > 1):
        mid = np.floor((lo + hi) / 2)
        ok = published.clopper_pearson_lower_array(np.round(p * np.maximum(mid, 1)), np.maximum(mid, 1),
                                                   ALPHA) >= target
        open_ = hi - lo > 1
        hi = np.where(open_ & ok, mid, hi)
        lo = np.where(open_ & ~ok, mid, lo)
    return np.where(reached > 0, N0 + hi, 0.0)


def largest_gap(results: Results, reference: Results, grid) -> float:
    """The largest certified-accuracy difference over the grid radii, in points."""
    return 100 * float(np.max(np.abs(accuracy(*results[:2], grid) - accuracy(*reference[:2], grid))))


# -- one population -------------------------------------------------------------------------------------
def population_section(title: str, population: np.ndarray, cert, seed: int,
                       fixed_radii: bool = True) -> tuple[str, np.ndarray]:
    """The section's text and its radius grid."""
    began = time.perf_counter()
    plain = run_population(population, cert, {"Cohen": cohen}, seed)
    grid = radius_grid([_as_results(*plain["Cohen"])], ADVERSARY)
    procedures = {"Cohen": cohen, ISSUE_12: with_rules(sequential("bonferroni", tuple(grid)), *REFERENCE[1:]),
                  "bonferroni": sequential("bonferroni", tuple(grid)),
                  "anytime": sequential("anytime", tuple(grid)),
                  "bonferroni, no grid": sequential("bonferroni", None),
                  "anytime, no grid": sequential("anytime", None),
                  "Cohen two-class": lambda p, rng, c: cohen(p, rng, c, two_class=True),
                  "anytime two-class": sequential("anytime", tuple(grid), two_class=True)}
    results = run_population(population, cert, procedures, seed)
    results.update(published_results(population, cert, grid, seed))
    lines = [f"### {title} ({len(population)} inputs)", "", "Certified accuracy (%) at each radius:", ""]
    lines += grid_table(results, grid, ISSUE_12)
    floor = floor_per_input(population, cert, grid).mean()
    lines += [""] + [versus(results, name, grid) for name in ("anytime", "bonferroni")]
    lines += [default_versus(results, grid)]
    lines += [f"floor (oracle knowing p, Clopper-Pearson at alpha, one look): {floor:,.0f} passes per input; "
              + ", ".join(f"{name} {results[name][2].mean():,.0f}"
                          for name in (ISSUE_12, "bonferroni", "anytime"))]
    lines += [published_verdict(results, grid)]
    gain = accuracy(*results["anytime two-class"][:2], grid) - accuracy(*results["anytime"][:2], grid)
    lines += [f"two-class form (anytime): {' / '.join(f'{100 * g:+.1f}' for g in gain)} points at the radii "
              "above"]
    if fixed_radii:
        chosen = [r for r in grid[1:] if r > 0][:4]
        lines += ["", "Deciding one radius fixed in advance (mean passes per input / certified accuracy %):", ""]
        lines += fixed_radius_table(population, cert, chosen, seed)
    lines += ["", f"({time.perf_counter() - began:.0f} s)"]
    return "\n".join(lines), grid



def published_verdict(results: dict[str, Results], grid) -> str:
    """The issue's second target: anytime no worse than the best published procedure (with the grid)."""
    best = min(PUBLISHED_GRID, key=lambda name: results[name][2].sum())
    ratio = results[best][2].sum() / results["anytime"][2].sum()
    return (f"best published procedure with the grid: {best}, {results[best][2].mean():,.0f} passes per input; "
            f"anytime spends {ratio:.2f}x fewer (largest accuracy gap "
            f"{largest_gap(results['anytime'], results[best], grid):.1f} points)")


def _as_results(radius, correct, passes):
    from wulff.certify.results import Results as ResultFile
    size = len(radius)
    return ResultFile({"adversaries": [ADVERSARY]}, {
        "index": np.arange(size), "label": np.zeros(size, dtype=np.int64),
        "prediction": np.where(correct, 0, -1), "correct": correct.astype(np.int64),
        f"radius_{ADVERSARY}": np.asarray(radius, dtype=np.float64), "samples": np.asarray(passes)})


# -- the frontier of the stopping rules -----------------------------------------------------------------
@contextlib.contextmanager
def stopping_rules(level: float, price: float | None = None) -> Iterator[None]:
    """``wulff.certify.adaptive.DECISION_LEVEL`` set to ``level`` for the block, and VALUE_PRICE (the rule
    that gives up a grid radius not worth its samples) to ``price`` where given and the library has it;
    they set the cost, never the validity."""
    patch = {"DECISION_LEVEL": level}
    if not hasattr(adaptive, "DECISION_LEVEL"):
        raise RuntimeError("wulff.certify.adaptive.DECISION_LEVEL is gone: the frontier cannot patch it")
    if price is not None and hasattr(adaptive, "VALUE_PRICE"):
        patch["VALUE_PRICE"] = price
    elif price:
        raise RuntimeError("wulff.certify.adaptive.VALUE_PRICE is gone: the frontier cannot patch it")
    saved = {name: getattr(adaptive, name) for name in patch}
    for name, value in patch.items():
        setattr(adaptive, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(adaptive, name, value)


def value_prices() -> tuple[float, ...]:
    """0 (issue 12's rules) and the library's VALUE_PRICE, where it has one."""
    current = float(getattr(adaptive, "VALUE_PRICE", 0.0))
    return (0.0,) if current == 0 else (0.0, current)


def with_rules(procedure, level: float | None = None, price: float | None = None):
    """A per-input procedure run under :func:`stopping_rules` (level None: the library's)."""
    def run(probs: np.ndarray, rng, cert):
        with stopping_rules(adaptive.DECISION_LEVEL if level is None else level, price):
            return procedure(probs, rng, cert)
    return run


def frontier_section(title: str, population: np.ndarray, cert, grid, seed: int) -> str:
    """Passes against accuracy as DECISION_LEVEL (and VALUE_PRICE) vary, for both wulff procedures; where
    the passes go."""
    floor = floor_per_input(population, cert, grid)
    runs = {}
    for method in ("bonferroni", "anytime"):
        for price in value_prices():
            for level in DECISION_LEVELS:
                with stopping_rules(level, price):
                    runs[method, level, price] = sequential_reasons(population, cert, method, tuple(grid), seed)
    reference = runs[REFERENCE][0]
    cohen_run = run_population(population, cert, {"Cohen": cohen}, seed)["Cohen"]
    with stopping_rules(*REFERENCE[1:]):
        again = sequential_reasons(population, cert, REFERENCE[0], tuple(grid), seed + 1)[0]
    lines = [f"### Frontier on {title} ({len(population)} inputs): DECISION_LEVEL of the stopping rules",
             "", f"Reference: issue 12's adaptive procedure ({REFERENCE[0]}, DECISION_LEVEL = {REFERENCE[1]:g}, "
             f"VALUE_PRICE = 0); target: {TARGET_RATIO}x fewer passes within {TARGET_POINTS} points at every "
             f"radius. Floor (oracle): {floor.mean():,.0f} passes per input. Monte Carlo noise: the reference run "
             f"again with other votes differs from it by up to {largest_gap(again, reference, grid):.1f} points "
             f"and {abs(again[2].sum() / reference[2].sum() - 1):.0%} in passes.", "",
             "| procedure | DECISION_LEVEL | VALUE_PRICE | passes per input | x fewer than reference | "
             "largest gap vs reference (points) | largest gap vs Cohen | "
             + " | ".join(f"r = {r:g}" for r in grid) + " |",
             "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(grid)]
    for (method, level, price), (results, _) in runs.items():
        ratio = reference[2].sum() / results[2].sum()
        lines.append(f"| {method} | {level:g} | {price:g} | {results[2].mean():,.0f} | {ratio:.2f} | "
                     f"{largest_gap(results, reference, grid):.1f} | "
                     f"{largest_gap(results, cohen_run, grid):.1f} | "
                     + " | ".join(f"{100 * a:.1f}" for a in accuracy(*results[:2], grid)) + " |")
    lines += ["", frontier_verdict(runs, reference, grid), ""]
    lines += [floor_bound(key, *runs[key], floor, reference) for key in runs if key[1] == REFERENCE[1]]
    lines += [""] + reasons_table(runs, floor)
    return "\n".join(lines)


def reasons_table(runs: dict, floor: np.ndarray) -> list[str]:
    """Per run and stop reason: share of all passes / passes per input / oracle floor per input / inputs."""
    seen = {r for _, reason in runs.values() for r in reason}
    groups = list(STOP_GROUPS) + sorted(seen - set(STOP_GROUPS))
    lines = ["Where the passes go (per stop reason: share of all passes / passes per input / oracle floor per "
             "input / inputs):", "",
             "| procedure | DECISION_LEVEL | VALUE_PRICE | " + " | ".join(groups) + " |",
             "|---|---:|---:|" + "---|" * len(groups)]
    for (method, level, price), (results, reason) in runs.items():
        total = results[2].sum()
        cells = []
        for group in groups:
            chosen = reason == group
            cells.append("-" if not chosen.any() else
                         f"{100 * results[2][chosen].sum() / total:.0f} % / {results[2][chosen].mean():,.0f} / "
                         f"{floor[chosen].mean():,.0f} / {int(chosen.sum())}")
        lines.append(f"| {method} | {level:g} | {price:g} | " + " | ".join(cells) + " |")
    return lines


def floor_bound(key: tuple, results: Results, reason: np.ndarray, floor: np.ndarray, reference: Results) -> str:
    """What the passes by stop reason allow: the ratio to the reference were every input that stopped
    before n_max decided at its oracle floor (the n_max inputs kept), and were every input at its floor."""
    method, level, price = key
    passes, ran_out = results[2], reason == "n_max"
    decided_at_floor = passes[ran_out].sum() + floor[~ran_out].sum()
    share = passes[ran_out].sum() / passes.sum()
    return (f"{method} at DECISION_LEVEL = {level:g}, VALUE_PRICE = {price:g}: {ran_out.mean():.1%} of the "
            f"inputs ran to n_max and took {share:.0%} of the passes; with every other input decided at its "
            f"oracle floor it would be {reference[2].sum() / decided_at_floor:.2f}x cheaper than the reference, "
            f"and {reference[2].sum() / floor.sum():.2f}x with the n_max inputs at their floor too.")


def frontier_verdict(runs: dict, reference: Results, grid) -> str:
    """The cheapest run of each procedure (and VALUE_PRICE) within TARGET_POINTS of the reference at every
    radius."""
    said = []
    for method, price in dict.fromkeys((m, v) for m, _, v in runs):
        within = [(level, results) for (m, level, v), (results, _) in runs.items()
                  if (m, v) == (method, price) and largest_gap(results, reference, grid) <= TARGET_POINTS]
        name = f"{method} (VALUE_PRICE = {price:g})"
        if not within:
            said.append(f"{name}: no level within {TARGET_POINTS} points")
            continue
        level, results = min(within, key=lambda item: item[1][2].sum())
        ratio = reference[2].sum() / results[2].sum()
        verdict = (f"{TARGET_RATIO / ratio:.2f}x short of the target" if ratio < TARGET_RATIO
                   else "target met")
        said.append(f"{name}: {ratio:.2f}x fewer passes at best within {TARGET_POINTS} points "
                    f"(DECISION_LEVEL = {level:g}; {verdict})")
    return "; ".join(said) + " (the gap includes the Monte Carlo noise of one run)"


# -- the validity checks --------------------------------------------------------------------------------
def binomial_limit(alpha: float, runs: int) -> float:
    """The over-claim rate a valid procedure stays below but for a 3-sigma fluke."""
    return alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def slab_cases(cert, grid, runs: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Three-class slabs under Gaussian noise (class A on x_1 < a, B on x_1 >= a + 0.1, the rest between:
    the exact l2 radius is a + 0.05, Cohen's Theorem 1 being tight), a placed just above a grid threshold
    in turn. Returns (probs, exact radius) per run."""
    from scipy.stats import norm

    thresholds = grid_thresholds(cert, grid)
    a = sigma * norm.ppf(thresholds[np.arange(runs) % len(grid)]) + 1e-4
    probs = np.stack([norm.cdf(a / sigma), 1 - norm.cdf((a + 0.1) / sigma), np.zeros(runs)], axis=1)
    probs[:, 2] = 1 - probs[:, :2].sum(axis=1)
    return probs, a + 0.05


def boundary_cases(cert, grid, runs: int) -> tuple[np.ndarray, np.ndarray]:
    """Two classes, p_A a hair below a grid threshold in turn (p_B = 1 - p_A): the exact radius R(p_A) is
    just below that grid radius, so claiming it over-claims; a valid test does so with probability at
    most its level, and the tests are most tempted here."""
    thresholds = grid_thresholds(cert, grid)
    p = thresholds[np.arange(runs) % len(grid)] - 1e-6
    return np.stack([p, 1 - p], axis=1), np.array([float(cert.radius(x)) for x in p])


def overclaims_sequential(cases, cert, grid, method: str, two_class: bool, rng) -> int:
    probs_all, exact_all = cases
    wrong = 0
    for probs, exact in zip(probs_all, exact_all):
        out = certify_sequential(lambda k, probs=probs: rng.multinomial(k, probs), CHECK_N_MAX, CHECK_ALPHA,
                                 {"l2": cert}, grid, method=method, two_class=two_class)
        wrong += not out.abstained and (out.candidate != 0 or out.radius["l2"] > exact)
    return wrong


def overclaims_published(cases, cert, grid, name: str, rng) -> int:
    probs, exact = cases
    thresholds = grid_thresholds(cert, grid)
    m = CHECK_N_MAX - N0
    if name == "Cohen, randomized CP":
        label, rho = published.cohen_randomized(probs, CHECK_ALPHA, rng, m)
        radius = np.array([float(cert.radius(r)) if r > 0.5 else 0.0 for r in rho])
        return int(np.sum((rho > 0.5) & ((label != 0) | (radius > exact))))
    if name == "Horvath et al.":
        decided = published.horvath(probs, thresholds, CHECK_ALPHA, rng)
    else:
        decided = published.voracek(probs, thresholds, CHECK_ALPHA, rng, m,
                                    "mixture" if name == "Voracek, mixture" else "union")
    return int(np.sum((decided.level > 0) & ((decided.label != 0) | (decided.radius(grid) > exact))))


def coverage_lines(rng, runs: int) -> list[str]:
    """The randomized Clopper-Pearson bound's miscoverage P(L > p) at CHECK_ALPHA by simulation, beside
    Clopper-Pearson's (conservative: below alpha at small n); a valid and exact bound sits at alpha."""
    lines = ["", f"Randomized Clopper-Pearson lower bound at alpha = {CHECK_ALPHA}: miscoverage P(L > p) over "
             f"{runs} draws each (exact: {100 * CHECK_ALPHA:.1f} %; limits "
             f"{100 * lower_limit(CHECK_ALPHA, runs):.2f} "
             f"to {100 * binomial_limit(CHECK_ALPHA, runs):.2f} %)", "",
             "| p | n | randomized CP (%) | Clopper-Pearson (%) | mean bound, randomized / CP |",
             "|---:|---:|---:|---:|---|"]
    for p, n in ((0.7, 20), (0.5, 7), (0.9, 100), (0.99, 1000), (0.999, 10_000), (0.6, 100_000)):
        k = rng.binomial(n, p, runs)
        randomized = published.randomized_clopper_pearson_lower(k, n, CHECK_ALPHA, rng.random(runs))
        plain = published.clopper_pearson_lower_array(k, n, CHECK_ALPHA)
        lines.append(f"| {p:g} | {n:,} | {100 * np.mean(randomized > p):.2f} | {100 * np.mean(plain > p):.2f} | "
                     f"{randomized.mean():.6f} / {plain.mean():.6f} |")
    return lines


def lower_limit(alpha: float, runs: int) -> float:
    return max(0.0, alpha - 3 * math.sqrt(alpha * (1 - alpha) / runs))


def validity_section(seed: int, runs: int = CHECK_RUNS) -> str:
    """Over-claims at alpha = 0.05 on the slab cases and on the boundary cases, every procedure, ``runs``
    runs each; then the randomized Clopper-Pearson bound's coverage."""
    sigma = 0.25
    cert = best_certificate(D.Gaussian(2, sigma=sigma), "l2")
    grid = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
    rng = np.random.default_rng(seed)
    cases = {"slabs": slab_cases(cert, grid, runs, sigma), "boundary": boundary_cases(cert, grid, runs)}
    lines = [f"### Validity: over-claims at alpha = {CHECK_ALPHA} over {runs} runs each (binomial limit "
             f"{100 * binomial_limit(CHECK_ALPHA, runs):.2f} %), n_max = {CHECK_N_MAX:,}", "",
             "Slabs: three classes, exact two-class radius known, p_A just above a grid threshold; boundary: two "
             "classes, p_A a hair below a grid threshold (claiming that grid radius over-claims).", "",
             "| procedure | slabs: over-claims | rate (%) | boundary: over-claims | rate (%) |",
             "|---|---:|---:|---:|---:|"]
    sequential_methods = {"bonferroni": ("bonferroni", False), "anytime": ("anytime", False),
                          "anytime two-class": ("anytime", True)}
    for name, (method, two) in sequential_methods.items():
        counts = [overclaims_sequential(c, cert, grid, method, two, rng) for c in cases.values()]
        lines.append(_validity_row(name, counts, runs))
    for name in ("Cohen, randomized CP", "Horvath et al.", "Voracek, mixture", "Voracek, union bound + rand. CP"):
        counts = [overclaims_published(c, cert, grid, name, rng) for c in cases.values()]
        lines.append(_validity_row(name + ("" if name.startswith("Cohen") else " (grid)"), counts, runs))
    lines += coverage_lines(rng, runs)
    return "\n".join(lines)


def _validity_row(name: str, counts: list[int], runs: int) -> str:
    return f"| {name} | " + " | ".join(f"{c} | {100 * c / runs:.2f}" for c in counts) + " |"


# -- the digits model -----------------------------------------------------------------------------------
def digits_section(skip: int, epochs: int, seed: int, batch_size: int, frontier: bool) -> str:
    """Section (b): the populations' comparison on the digits model's probabilities, its frontier, and the
    anytime procedure on the real model."""
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
    section, grid = population_section(title, population, cert, seed)
    if frontier:
        section += "\n\n" + frontier_section("(b) digits", population, cert, grid, seed)
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
    parser.add_argument("--quick", action="store_true",
                        help="200 inputs per population, no digits, 500 validity runs (under 2 minutes)")
    parser.add_argument("--inputs", type=int, default=None, help="size of each population (default 1000)")
    parser.add_argument("--digits-skip", type=int, default=3, help="certify every k-th digits test input")
    parser.add_argument("--epochs", type=int, default=30, help="digits training epochs (default 30, as the demo)")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--no-digits", action="store_true", help="only the populations")
    parser.add_argument("--no-frontier", action="store_true", help="skip the DECISION_LEVEL frontier")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.inputs is not None and args.inputs < 1:
        parser.error(f"--inputs must be a positive integer; got {args.inputs}")
    inputs = args.inputs or (200 if args.quick else 1000)
    began = time.perf_counter()
    print(f"n0 = {N0}, n = {N:,}, alpha = {ALPHA}; adaptive procedures: n_max = n0 + n; "
          "grid = the radii `wulff report` would print for Cohen's run\n")
    cert = best_certificate(D.Laplace(64, sigma=0.5), ADVERSARY)
    rng = np.random.default_rng(args.seed)
    for i, (title, make) in enumerate(POPULATIONS.items()):
        population = make(inputs, rng)
        text, grid = population_section(title + ", Laplace d = 64, sigma = 0.5, l1", population, cert,
                                        args.seed + i)
        print(text + "\n", flush=True)
        if i == 0 and not args.no_frontier:
            print(frontier_section("(a) synthetic", population, cert, grid, args.seed + i) + "\n", flush=True)
    print(validity_section(args.seed, 500 if args.quick else CHECK_RUNS) + "\n", flush=True)
    if not (args.no_digits or args.quick):
        print(digits_section(args.digits_skip, args.epochs, args.seed, args.batch_size,
                             not args.no_frontier) + "\n")
    print(f"total time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
