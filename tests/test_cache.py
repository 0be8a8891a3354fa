"""wulff.cache: memory + disk layers, concurrent writers, corrupted entries rebuilt (issue 3, item 6)."""
import multiprocessing as mp
import os
import pickle

import numpy as np
import pytest

from wulff import cache


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WULFF_CACHE_DIR", str(tmp_path))
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
    assert len(list(cache_dir.glob("*.pkl"))) == 1


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip_payload", "other_key", "old_version"])
def test_corrupted_entry_is_rebuilt_not_trusted(cache_dir, damage):
    key = ("entry", damage)
    cache.cached(key, lambda: {"value": 1})
    (path,) = cache_dir.glob("*.pkl")
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(raw)))
    else:
        version, stored_key, blob, checksum = pickle.loads(raw)
        if damage == "flip_payload":
            blob = pickle.dumps({"value": 666})  # checksum no longer matches
        elif damage == "other_key":
            stored_key = repr(("someone", "else"))
        else:
            version = cache.FORMAT_VERSION - 1
        path.write_bytes(pickle.dumps((version, stored_key, blob, checksum)))
    cache.clear_memory()
    calls = []
    assert cache.cached(key, _counting_build(calls, {"value": 2})) == {"value": 2}
    assert calls == [1]
    cache.clear_memory()
    assert cache.cached(key, lambda: pytest.fail("the rebuilt entry was not stored")) == {"value": 2}


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
    assert len(list(cache_dir.glob("*.pkl"))) == 1
    cache.clear_memory()
    second = derive(D.ExpInf(6, k=2, lam=3.0), "linf")  # same structure, other lam: same unit entry
    rho = np.array([0.6, 0.9, 0.999])
    np.testing.assert_allclose(second.radius(rho), 2 * first.radius(rho), rtol=1e-12)
    assert cache_key(q, "linf") == cache_key(D.ExpInf(6, k=2, lam=3.0), "linf")
    assert cache_key(q, "linf") != cache_key(D.ExpInf(7, k=2, lam=1.5), "linf")
