"""wulff.cache: memory + disk layers, concurrent writers, corrupted or planted entries rebuilt, never run."""
import json
import multiprocessing as mp
import os
import pickle

import numpy as np
import pytest

from wulff import cache


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WULFF_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(cache.KEY_ENV, str(tmp_path.parent / f"{tmp_path.name}-key" / "cache.key"))
    cache.clear_memory()
    yield tmp_path
    cache.clear_memory()


def _counting_build(counter, value):
    def build():
        counter.append(1)
        return value
    return build


def test_memory_then_disk_then_rebuild(cache_dir):
    calls = []
    key = ("unit", 1, "linf")
    payload = {"c": np.arange(5.0), "formula": "Symbol('rho')"}
    assert cache.cached(key, _counting_build(calls, payload))["formula"] == "Symbol('rho')"
    assert cache.cached(key, _counting_build(calls, payload)) is not None
    assert len(calls) == 1  # memory hit
    cache.clear_memory()
    np.testing.assert_array_equal(cache.cached(key, _counting_build(calls, None))["c"], np.arange(5.0))
    assert len(calls) == 1  # disk hit
    assert len(list(cache_dir.glob("*.npz"))) == 1


def _rewrite(path, edit):
    """Rewrite an entry with ``edit(meta_list, arrays)`` applied and a *valid* HMAC: what a planter who
    could read the user's key could do (the content checks behind the HMAC must still hold)."""
    with np.load(path, allow_pickle=False) as archive:
        files = {k: archive[k] for k in archive.files}
    meta = json.loads(str(files.pop("__meta__")))
    files.pop("__mac__")
    edit(meta, files)
    text = json.dumps(meta)
    np.savez(path.with_suffix(""), __meta__=np.array(text),
             __mac__=np.array(cache._mac(cache.secret_key(), text, files)), **files)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip_payload", "other_key", "old_version"])
def test_corrupted_entry_is_rebuilt_not_trusted(cache_dir, damage):
    key = ("entry", damage)
    cache.cached(key, lambda: {"value": 1, "rows": np.arange(3.0)})
    (path,) = cache_dir.glob("*.npz")
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(raw)))
    elif damage == "flip_payload":  # the checksum no longer matches
        with np.load(path, allow_pickle=False) as archive:
            files = {k: archive[k] for k in archive.files}
        files["__meta__"] = np.array(str(files["__meta__"]).replace('"value": 1', '"value": 666'))
        np.savez(path.with_suffix(""), **files)
    elif damage == "other_key":
        _rewrite(path, lambda meta, files: meta.__setitem__(1, repr(("someone", "else"))))
    else:
        _rewrite(path, lambda meta, files: meta.__setitem__(0, cache.FORMAT_VERSION - 1))
    cache.clear_memory()
    calls = []
    assert cache.cached(key, _counting_build(calls, {"value": 2}))["value"] == 2
    assert calls == [1]
    cache.clear_memory()
    assert cache.cached(key, lambda: pytest.fail("the rebuilt entry was not stored")) == {"value": 2}


class _Payload:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_pickle_never_runs(cache_dir, tmp_path):
    """An entry that is a pickle (the old format, or planted), or an .npz holding a pickled object
    array, is never unpickled: it is rebuilt and the payload's code does not run."""
    key = ("planted", 1)
    marker = tmp_path / "pwned"
    path = cache_dir / f"{cache._digest(key)}{cache.SUFFIX}"
    (cache_dir / f"{cache._digest(key)}.pkl").write_bytes(pickle.dumps(_Payload(str(marker))))
    path.write_bytes(pickle.dumps(_Payload(str(marker))))
    assert cache.cached(key, lambda: {"value": 3}) == {"value": 3}
    np.savez(cache_dir / "objects", __meta__=np.array([_Payload(str(marker))], dtype=object),
             __checksum__=np.array("0"))
    os.replace(cache_dir / "objects.npz", path)
    cache.clear_memory()
    assert cache.cached(key, lambda: {"value": 4}) == {"value": 4}
    assert not marker.exists()


def test_only_plain_data_is_cached(cache_dir):
    with pytest.raises(TypeError, match="not plain data"):
        cache.cached(("obj",), lambda: {"f": object()})
    with pytest.raises(TypeError, match="numeric arrays"):
        cache.cached(("objarr",), lambda: {"a": np.array([object()], dtype=object)})
    tree = {"t": (1, 2.5, "x"), "l": [None, True, float("inf")], "a": np.arange(4, dtype=np.int64)}
    cache.cached(("plain",), lambda: tree)
    cache.clear_memory()
    got = cache.cached(("plain",), lambda: pytest.fail("not stored"))
    assert got["t"] == (1, 2.5, "x") and got["l"] == [None, True, float("inf")]
    assert got["a"].dtype == np.int64 and got["a"].tolist() == [0, 1, 2, 3]


def test_a_planted_formula_never_runs(cache_dir, tmp_path):
    """A validly checksummed entry whose formula text is Python code is refused by the restricted parser
    and the certificate is rebuilt: the code does not run."""
    import sys

    import wulff.distributions as D
    from wulff.diffmethod import cache_key, derive
    dm = sys.modules["wulff.diffmethod.derive"]
    q = D.ExpInf(5, k=2, lam=1.0)
    honest = derive(q, "l1").radius(np.array([0.7, 0.9]))
    (path,) = cache_dir.glob("*.npz")
    marker = tmp_path / "pwned"
    code = f"__import__('pathlib').Path({str(marker)!r}).write_text('x') or Symbol('rho')"

    def plant(meta, files):
        meta[2]["closed"]["radius"] = code
    _rewrite(path, plant)
    with np.load(path, allow_pickle=False) as archive:
        assert code in str(archive["__meta__"])
    cache.clear_memory()
    dm._units.clear()
    again = derive(D.ExpInf(5, k=2, lam=1.0), "l1")
    assert not marker.exists()
    np.testing.assert_array_equal(again.radius(np.array([0.7, 0.9])), honest)
    assert cache_key(q, "l1")[0] == "wulff.diffmethod"


def _writer(directory, worker, rounds, queue):
    os.environ["WULFF_CACHE_DIR"] = directory
    from wulff import cache as c
    out = []
    for i in range(rounds):
        c.clear_memory()
        out.append(c.cached(("shared", i % 3), lambda i=i: {"rows": np.full(2000, i % 3, dtype=float)})["rows"][0])
    queue.put((worker, out))


def test_concurrent_writers_never_leave_a_torn_entry(cache_dir):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(cache_dir), w, 30, queue)) for w in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    for _worker, values in results:
        assert values == [float(i % 3) for i in range(30)]
    assert not list(cache_dir.glob(".tmp-*"))  # temporary files were renamed or removed
    cache.clear_memory()
    for i in range(3):
        got = cache.cached(("shared", i), lambda: pytest.fail("a complete entry must exist"))
        np.testing.assert_array_equal(got["rows"], np.full(2000, i, dtype=float))


def test_disk_layer_off_or_unwritable(tmp_path, monkeypatch):
    monkeypatch.setenv("WULFF_CACHE_DIR", "off")
    cache.clear_memory()
    assert cache.cache_dir() is None
    assert cache.cached(("k",), lambda: 3) == 3
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("WULFF_CACHE_DIR", str(blocked / "sub"))
    cache.clear_memory()
    assert cache.cached(("k2",), lambda: 4) == 4  # the disk error only disables the disk layer


def test_derive_uses_the_cache_and_rebuilds_certificates(cache_dir):
    import wulff.distributions as D
    from wulff.diffmethod import cache_key, derive
    q = D.ExpInf(6, k=2, lam=1.5)
    first = derive(q, "linf")
    assert len(list(cache_dir.glob("*.npz"))) == 1
    cache.clear_memory()
    second = derive(D.ExpInf(6, k=2, lam=3.0), "linf")  # same structure, other lam: same unit entry
    rho = np.array([0.6, 0.9, 0.999])
    np.testing.assert_allclose(second.radius(rho), 2 * first.radius(rho), rtol=1e-12)
    assert cache_key(q, "linf") == cache_key(D.ExpInf(6, k=2, lam=3.0), "linf")
    assert cache_key(q, "linf") != cache_key(D.ExpInf(7, k=2, lam=1.5), "linf")
