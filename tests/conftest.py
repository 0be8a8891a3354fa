"""Shared fixtures. Modules opt in with ``pytestmark = pytest.mark.usefixtures(...)``."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """The models in these tests are tiny: one intra-op thread is fastest and immune to a busy CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory):
    """A fresh on-disk certificate cache for the module (WULFF_CACHE_DIR)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("WULFF_CACHE_DIR", str(tmp_path_factory.mktemp("wulff-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session", autouse=True)
def private_cache_key():
    """The tests sign cache entries with a key of their own (WULFF_CACHE_KEY), never the user's
    ~/.config/wulff/cache.key; one per user that outlives the run, so a cache directory reused by the
    next run stays valid. A key given in the environment is kept."""
    import os
    import tempfile
    from pathlib import Path

    if os.environ.get("WULFF_CACHE_KEY"):
        yield
        return
    mp = pytest.MonkeyPatch()
    mp.setenv("WULFF_CACHE_KEY", str(Path(tempfile.gettempdir()) / f"wulff-test-key-{os.getuid()}" / "cache.key"))
    yield
    mp.undo()
