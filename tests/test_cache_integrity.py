"""Caches that someone else wrote (issue 24, item 3): a cache entry never changes a radius, hangs or
crashes. Entries are authenticated by an HMAC keyed by a per-user secret outside the cache directory;
formulas are read back with bounded exact arithmetic and symbol names; loaded certificates are
re-checked against their own definition (Theorem G.6, Algorithm 1); whatever fails is rebuilt with a
one-line warning. docs/security.md states the threat model."""
import hashlib
import json
import os
import secrets
import stat
import subprocess
import sys

import numpy as np
import pytest

import wulff.distributions as D
from wulff import cache
from wulff.diffmethod import derive

DM = sys.modules["wulff.diffmethod.derive"]
RHO = np.array([0.55, 0.7, 0.9, 0.99, 0.999999])


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    monkeypatch.setenv("WULFF_CACHE_DIR", str(directory))
    monkeypatch.setenv(cache.KEY_ENV, str(tmp_path / "config" / "wulff" / "cache.key"))
    _forget()
    yield directory
    _forget()


def _forget():
    cache.clear_memory()
    DM._units.clear()


def _entry(directory):
    (path,) = directory.glob("*.npz")
    return path


def _read(path):
    with np.load(path, allow_pickle=False) as archive:
        files = {k: archive[k] for k in archive.files}
    return json.loads(str(files.pop("__meta__"))), {k: v for k, v in files.items() if not k.startswith("__")}


def _unkeyed_checksum(text, arrays):
    """The unkeyed sha256 that authenticated entries before: anyone can compute it."""
    h = hashlib.sha256(text.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"|{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _plant(path, meta, arrays, secret=None):
    """Write an entry as a planter would: with the unkeyed checksum, and an HMAC under ``secret`` (the
    user's key: a planter who could read it) or else under a key of the planter's own."""
    text = json.dumps(meta)
    if secret is not None:
        np.savez(path.with_suffix(""), __meta__=np.array(text), __mac__=np.array(cache._mac(secret, text, arrays)),
                 **arrays)
        return
    mac = cache._mac(secrets.token_bytes(cache.KEY_BYTES), text, arrays)
    np.savez(path.with_suffix(""), __meta__=np.array(text), __checksum__=np.array(_unkeyed_checksum(text, arrays)),
             __mac__=np.array(mac), **arrays)


def _edit_closed_form(path, edit, secret=None):
    meta, arrays = _read(path)
    closed = meta[2]["closed"]
    closed["radius"], closed["Phi"] = edit(closed["radius"], closed["Phi"])
    _plant(path, meta, arrays, secret)


def _honest(q, adversary):
    """The radius of a freshly derived certificate (disk cache off) and the entry derive() writes."""
    reference = derive(q, adversary, cache=False).radius(RHO)
    derive(q, adversary)
    _forget()
    return reference


# ---------------------------------------------------------------------------------------------
# the key
# ---------------------------------------------------------------------------------------------
def test_the_key_is_created_private_outside_the_cache_and_kept(cache_dir):
    cache.cached(("k", 1), lambda: {"v": 1})
    path = cache.key_path()
    assert not path.resolve().is_relative_to(cache_dir.resolve())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(bytes.fromhex(path.read_text().strip())) == cache.KEY_BYTES
    first = cache.secret_key()
    cache.cached(("k", 2), lambda: {"v": 2})
    assert cache.secret_key() == first  # created once, then read
    meta_files = np.load(_entry_named(cache_dir, ("k", 1)), allow_pickle=False).files
    assert "__mac__" in meta_files and "__checksum__" not in meta_files


def _entry_named(directory, key):
    return directory / f"{cache._digest(key)}{cache.SUFFIX}"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_a_key_others_may_read_or_write_is_refused(cache_dir, mode):
    """The disk layer is off (one warning naming the file and the fix): nothing is read or written."""
    key = ("perm", mode)
    cache.cached(key, lambda: {"v": "honest"})
    path = cache.key_path()
    meta, arrays = _read(_entry_named(cache_dir, key))
    meta[2]["v"] = "planted"
    _plant(_entry_named(cache_dir, key), meta, arrays, cache.secret_key())  # valid under the exposed key
    path.chmod(mode)
    _forget()
    refused = r"readable or writable by others .*chmod 600.*disk cache is off"
    with pytest.warns(cache.CacheEntryWarning, match=refused):
        assert cache.cached(key, lambda: {"v": "rebuilt"}) == {"v": "rebuilt"}
    with pytest.raises(cache.CacheKeyError, match="chmod 600"):
        cache.secret_key()
    cache.cached(("another", mode), lambda: 1)
    assert not _entry_named(cache_dir, ("another", mode)).exists()  # nothing written without a usable key


def test_a_key_of_another_user_a_symlink_or_inside_the_cache_is_refused(cache_dir, tmp_path, monkeypatch):
    cache.cached(("k",), lambda: 1)
    path = cache.key_path()
    info = os.stat(path)
    foreign = os.stat_result((info.st_mode, info.st_ino, info.st_dev, info.st_nlink, info.st_uid + 1,
                              info.st_gid, info.st_size, 0, 0, 0))
    with pytest.raises(cache.CacheKeyError, match="another user"):
        cache._check_key_file(path, foreign)
    link = tmp_path / "link.key"
    link.symlink_to(path)
    monkeypatch.setenv(cache.KEY_ENV, str(link))
    with pytest.raises(cache.CacheKeyError, match="symbolic link"):
        cache.secret_key()
    monkeypatch.setenv(cache.KEY_ENV, str(cache_dir / "cache.key"))
    with pytest.raises(cache.CacheKeyError, match="inside the cache directory"):
        cache.secret_key()
    monkeypatch.setenv(cache.KEY_ENV, str(tmp_path / "short.key"))
    (tmp_path / "short.key").write_text("abcd\n")
    (tmp_path / "short.key").chmod(0o600)
    with pytest.raises(cache.CacheKeyError, match="hex digits"):
        cache.secret_key()


# ---------------------------------------------------------------------------------------------
# forged entries
# ---------------------------------------------------------------------------------------------
def test_a_forged_entry_without_the_key_is_rebuilt(cache_dir):
    """The attack of the issue: a formula multiplied by 1000, with a valid unkeyed checksum."""
    q = D.Laplace(4, lam=1.0)
    honest = _honest(q, "l1")
    _edit_closed_form(_entry(cache_dir), lambda radius, phi: (f"Mul(Integer(1000), {radius})", phi))
    with pytest.warns(cache.CacheEntryWarning, match="wrong HMAC"):
        np.testing.assert_array_equal(derive(q, "l1").radius(RHO), honest)
    _forget()
    np.testing.assert_array_equal(derive(q, "l1").radius(RHO), honest)  # the rebuilt entry is stored


def test_an_entry_written_with_another_key_is_rebuilt(cache_dir, tmp_path, monkeypatch):
    cache.cached(("shared",), lambda: {"rows": np.arange(3.0)})
    monkeypatch.setenv(cache.KEY_ENV, str(tmp_path / "other" / "cache.key"))
    _forget()
    with pytest.warns(cache.CacheEntryWarning, match="wrong HMAC"):
        assert cache.cached(("shared",), lambda: {"rows": np.zeros(2)})["rows"].tolist() == [0.0, 0.0]
    _forget()
    stored = cache.cached(("shared",), lambda: pytest.fail("stored under the new key"))
    assert stored["rows"].tolist() == [0.0, 0.0]


FORGERIES = {
    "radius x1000": lambda radius, phi: (f"Mul(Integer(1000), {radius})", phi),
    "radius x1000, Phi / 1000": lambda radius, phi: (f"Mul(Integer(1000), {radius})",
                                                     f"Mul(Rational(1, 1000), {phi})"),
    "radius x1.05": lambda radius, phi: (f"Mul(Rational(21, 20), {radius})", phi),
    "Phi / 1000 (the tangent at 1/2)": lambda radius, phi: (radius, f"Mul(Rational(1, 1000), {phi})"),
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_forged_formula_with_a_valid_hmac_fails_its_recheck(cache_dir, forgery):
    """Even a planter who could read the key cannot change a radius: the loaded certificate is
    re-checked against R(rho) = int dp / Phi(p) for the law rebuilt from q (Theorem G.6)."""
    q = D.Laplace(4, lam=2.0)
    honest = _honest(q, "l1")
    _edit_closed_form(_entry(cache_dir), FORGERIES[forgery], cache.secret_key())
    with pytest.warns(cache.CacheEntryWarning, match="failed its check"):
        np.testing.assert_array_equal(derive(q, "l1").radius(RHO), honest)


@pytest.mark.parametrize(("q", "adversary"), [(D.Laplace(3, lam=1.0), "linf"),
                                              (D.Pareto(3, a=4.0, lam=1.0), "l1")])
def test_forged_envelope_lines_with_a_valid_hmac_fail_their_recheck(cache_dir, q, adversary):
    """Intercepts e_i / 1000: lines below the stop-loss E(gamma - c_i)_+ of the law (Definition G.4)."""
    honest = _honest(q, adversary)
    path = _entry(cache_dir)
    meta, arrays = _read(path)
    name = meta[2]["envelope"]["e"]["__array__"]
    arrays[name] = arrays[name] / 1000
    _plant(path, meta, arrays, cache.secret_key())
    with pytest.warns(cache.CacheEntryWarning, match="failed its check"):
        np.testing.assert_array_equal(derive(q, adversary).radius(RHO), honest)


def test_a_symbol_named_lambda_is_rebuilt_not_a_traceback(cache_dir):
    q = D.Laplace(4, lam=1.0)
    honest = _honest(q, "l1")
    _edit_closed_form(_entry(cache_dir), lambda radius, phi: (radius.replace("'rho'", "'lambda'"), phi),
                      cache.secret_key())
    with pytest.warns(cache.CacheEntryWarning, match="'lambda' is not an allowed symbol name"):
        np.testing.assert_array_equal(derive(q, "l1").radius(RHO), honest)


#: a planted formula whose exact arithmetic would not terminate, run in a child process (a hang in C
#: code cannot be interrupted in-process); the child prints how long derive() took
_HANG_SCRIPT = """
import json, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, {tests!r})
import test_cache_integrity as t
from wulff import cache
from wulff.diffmethod import derive
import wulff.distributions as D
q = D.Laplace(4, lam=1.0)
honest = t._honest(q, "l1")
t._edit_closed_form(t._entry(Path({directory!r})), lambda radius, phi: ({factor!r} + radius + ")", phi),
                    cache.secret_key())
start = time.perf_counter()
radius = derive(q, "l1").radius(t.RHO)
print(json.dumps({{"seconds": time.perf_counter() - start, "same": bool(np.array_equal(radius, honest))}}))
"""


@pytest.mark.parametrize("factor", ["Mul(Pow(Integer(9), Integer(99999999)), ",
                                    "Mul(factorial(Integer(100000000)), ",
                                    "Mul(lowergamma(Integer(100000), Integer(1)), "])
def test_huge_exact_arithmetic_in_a_cached_formula_never_hangs(cache_dir, factor):
    script = _HANG_SCRIPT.format(tests=os.path.dirname(__file__), directory=str(cache_dir), factor=factor)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "failed its check" in proc.stderr and "too large" in proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["same"] and result["seconds"] < 10


# ---------------------------------------------------------------------------------------------
# level-set tables
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gaussian_table(tmp_path_factory):
    """The Gaussian d = 10 table, built once and stored through the cache (a few seconds)."""
    from wulff.levelset import spherical
    base = tmp_path_factory.mktemp("tables")
    mp = pytest.MonkeyPatch()
    mp.setenv("WULFF_CACHE_DIR", str(base / "cache"))
    mp.setenv(cache.KEY_ENV, str(base / "key" / "cache.key"))
    cache.clear_memory()
    radial = spherical.spherical_form(D.Gaussian(10, lam=1.0))
    table = spherical.table_for(radial)
    yield radial, table, base / "cache"
    mp.undo()
    cache.clear_memory()


def test_an_honest_table_loads_without_a_warning(gaussian_table, recwarn):
    from wulff.levelset import spherical
    radial, table, _ = gaussian_table
    cache.clear_memory()
    loaded = spherical.table_for(radial)
    assert not [w for w in recwarn if issubclass(w.category, cache.CacheEntryWarning)]
    np.testing.assert_array_equal(loaded["p"], table["p"])


TABLE_FORGERIES = {
    "radii x1000": lambda t: {**t, "radii": t["radii"] * 1000},
    "every p raised 1 %": lambda t: {**t, "p": np.minimum(t["p"] * 1.01, 0.5)},
    "tangent slope / 1000": lambda t: {**t, "slope": t["slope"] / 1000},
    "p increasing": lambda t: {**t, "p": t["p"][::-1].copy()},
    "a huge quadrature": lambda t: {**t, "half_nodes": 10 ** 12},
    "radii off the grid": lambda t: {**t, "radii": np.sort(t["radii"] * np.linspace(1, 3, t["radii"].size))},
}


@pytest.mark.parametrize("forgery", TABLE_FORGERIES)
def test_a_forged_table_fails_its_recheck(gaussian_table, forgery):
    from wulff.levelset import spherical
    from wulff.levelset.shifts import shift_of
    radial, table, _ = gaussian_table
    spherical._check_loaded_table(table, shift_of(radial), radial)  # the honest one passes
    with pytest.raises(ValueError):
        spherical._check_loaded_table(TABLE_FORGERIES[forgery](table), shift_of(radial), radial)


def test_a_forged_table_entry_is_not_used(gaussian_table, monkeypatch):
    """Through table_for: the radii x1000 entry with a valid HMAC is refused and rebuilt (the build is
    replaced by the honest table, to save its seconds)."""
    from wulff.levelset import spherical
    radial, table, directory = gaussian_table
    key = ("wulff.levelset.table", spherical.TABLE_VERSION, radial.structure_key(scale=False))
    path = _entry_named(directory, key)
    meta, arrays = _read(path)
    name = meta[2]["radii"]["__array__"]
    arrays[name] = arrays[name] * 1000
    _plant(path, meta, arrays, cache.secret_key())
    cache.clear_memory()
    calls = []
    monkeypatch.setattr(spherical, "build_table", lambda *args: calls.append(1) or table)
    with pytest.warns(cache.CacheEntryWarning, match="failed its check"):
        got = spherical.table_for(radial)
    assert calls == [1] and got is table


def test_a_low_d_table_is_rechecked_at_the_radii_its_p_were_computed_for(cache_dir, monkeypatch):
    """Below SMOOTH_SPHERE_D build_table computes p_i at eps_i and stores eps_i (1 - 1e-4): the recheck
    recomputes p_i at eps_i. At the stored radius a quadrature's p in the far tail of Power2(2, a=12) falls
    short of the table's by up to 1.2e-3 (every honest table re-read was refused when a spot row fell
    there); at eps_i it agrees, and a p raised by 1e-5 is still refused."""
    from wulff.levelset import spherical
    from wulff.levelset.shifts import shift_of
    radial = spherical.spherical_form(D.Power2(2, a=12, lam=1.0))
    table = spherical.table_for(radial)
    tail = np.arange(table["radii"].size - 60, table["radii"].size)  # the far tail, where the two differ
    monkeypatch.setattr(spherical, "spot_rows", lambda size, count: tail)
    spherical._check_loaded_table(table, shift_of(radial), radial)
    raised = {**table, "p": table["p"].copy()}
    raised["p"][tail[-20]] *= 1 + 1e-5
    with pytest.raises(ValueError):
        spherical._check_loaded_table(raised, shift_of(radial), radial)
