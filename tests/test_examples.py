"""Every script in examples/ runs (the slow ones on a smaller setting) and prints what it promises."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.usefixtures("private_cache")


def run_example(name: str, argv: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [name, *argv])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")


def test_declare_density_prints_a_formula_and_radii(monkeypatch, capsys):
    run_example("declare_density.py", [], monkeypatch)
    out = capsys.readouterr().out
    assert "GammaIncInv(1/3, 2*rho - 1)" in out  # Theorem N.2's closed form for sum |x_i|^3 vs l1
    assert out.count("vs l1") == out.count("vs l2") == out.count("vs linf") == 3
    assert "radial in l2" in out and "iid" in out


def test_levelset_vs_diffmethod_writes_the_figure(tmp_path, monkeypatch, capsys):
    out = tmp_path / "fig.png"
    run_example("levelset_vs_diffmethod.py", [str(out), "--dimensions", "32"], monkeypatch)
    assert out.stat().st_size > 10_000 and "wrote" in capsys.readouterr().out


def test_certify_digits_certifies_most_test_inputs(monkeypatch, capsys):
    run_example("certify_digits.py", [], monkeypatch)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("input ")]
    assert len(lines) == 5 and sum("class" in line for line in lines) >= 4


def test_radius_in_torch_trains_to_the_optimum_with_sound_narrow_dtypes(monkeypatch, capsys):
    run_example("radius_in_torch.py", [], monkeypatch)
    out = capsys.readouterr().out
    slopes = [line for line in out.splitlines() if "dR/drho" in line]
    assert len(slopes) == 3
    for line in slopes:  # autograd's slope equals lam / (1 - rho), both printed to 4 decimals
        assert line.split("dR/drho = ")[1].split()[0] == line.split("= ")[-1].rstrip(")")
    trained = float(out.split("trained rho = ")[1].split(";")[0])
    assert abs(trained - 0.9) < 1e-3
