"""``wulff derive``: named families and hand-written profiles."""
import pytest

from wulff.cli import main


@pytest.fixture(autouse=True)
def _no_disk_cache(monkeypatch):
    monkeypatch.setenv("WULFF_CACHE_DIR", "off")


def test_named_family_prints_phi_formula_latex_and_radii(capsys):
    assert main(["derive", "ExpInf", "--d", "16", "--k", "2", "--j", "1", "--adversary", "l1"]) == 0
    out = capsys.readouterr().out
    assert "Phi(p)" in out and "LaTeX:" in out and r"\Gamma" in out
    assert "closed-form" in out and "0.9" in out


def test_profile_strings(capsys):
    assert main(["derive", "abs(t)**3", "--d", "8", "--adversary", "l1"]) == 0
    assert "P^{-1}" in capsys.readouterr().out  # the inverse regularized incomplete gamma, in LaTeX
    assert main(["derive", "r**2/2", "--norm", "2", "--d", "8", "--adversary", "l2"]) == 0
    assert "\\Phi^{-1}" in capsys.readouterr().out
    assert main(["derive", "norm(x, 1)", "--d", "4", "--adversary", "linf"]) == 0
    assert "exact (discrete law)" in capsys.readouterr().out


def test_bad_requests_exit_with_a_message(capsys):
    assert main(["derive", "Laplace", "--k", "2"]) == 2
    assert "has no shape parameter k" in capsys.readouterr().err
    assert main(["derive", "r**2", "--d", "3"]) == 2  # a radial profile needs --norm
    assert main(["derive", "UniformCube", "--d", "3", "--adversary", "l1"]) == 0
    assert "not derived by the differential method" in capsys.readouterr().out
