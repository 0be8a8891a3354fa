"""Dataset certification: one row per input, resumable after a crash, shardable and mergeable."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import wulff.distributions as D
from wulff.certify import (
    Smoothed,
    certify_dataset,
    merge_results,
    read_results,
    shard_indices,
    shard_path,
)

D_IN = 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Threshold(torch.nn.Module):
    """Class 1 when x_1 > 0, else 0; optionally crashes after a number of forward passes."""

    def __init__(self, crash_after: int | None = None):
        super().__init__()
        self.calls = 0
        self.crash_after = crash_after

    def forward(self, x):
        self.calls += 1
        if self.crash_after is not None and self.calls > self.crash_after:
            raise KeyboardInterrupt("simulated crash")
        first = x[:, 0]
        return torch.stack([-first, first], dim=1)


def dataset(size: int = 12) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(size, D_IN, generator=g) * 2
    y = (x[:, 0] > 0).long()
    y[::5] = 1 - y[::5]  # some wrong labels, so "correct" varies
    return TensorDataset(x, y)


def run(path, model=None, **kw):
    q = D.Laplace(D_IN, lam=0.5)
    options = dict(n0=8, n=200, alpha=0.01, batch_size=64, adversaries=("l1",), progress=False) | kw
    return certify_dataset(Smoothed(model or Threshold(), q, 2), dataset(), path, **options)


def rows(path) -> list[str]:
    return path.read_text().splitlines()[2:]


def test_one_row_per_input_with_the_documented_columns(tmp_path):
    res = run(tmp_path / "r.tsv", skip=2)
    assert res.columns["index"].tolist() == list(range(0, 12, 2))
    header = (tmp_path / "r.tsv").read_text().splitlines()[1].split("\t")
    assert header == ["index", "label", "prediction", "rho_lower", "radius_l1", "correct", "seconds",
                      "samples"]
    data = dataset()
    labels = [int(data[i][1]) for i in range(0, 12, 2)]
    assert res.columns["label"].tolist() == labels
    assert (res.correct == (res.columns["prediction"] == res.columns["label"])).all()
    assert res.meta["distribution"] == "Laplace" and res.meta["n"] == 200
    assert (res.columns["seconds"] > 0).all()
    assert (res.columns["samples"] == 8 + 200).all() and (res.samples == 208).all()


def test_interrupted_run_resumes_without_losing_or_duplicating_rows(tmp_path):
    reference = run(tmp_path / "ref.tsv")
    path = tmp_path / "r.tsv"
    # each input costs 1 (n0) + 4 (n = 200 in batches of 64) forward passes: crash inside input 3
    with pytest.raises(KeyboardInterrupt):
        run(path, model=Threshold(crash_after=17))
    assert len(rows(path)) == 3
    with open(path, "a") as fh:  # a torn row, as if the process died in the middle of a write
        fh.write("3\t1\t1\t0.9")
    with pytest.raises(KeyboardInterrupt):
        run(path, model=Threshold(crash_after=22))
    assert len(rows(path)) == 7
    resumed = run(path)
    assert sorted(resumed.columns["index"].tolist()) == list(range(12))
    assert len(rows(path)) == 12
    # each input has its own noise stream, so the resumed file equals an uninterrupted run
    for name in ("index", "label", "prediction", "rho_lower", "radius_l1", "correct"):
        order = np.argsort(resumed.columns["index"])
        np.testing.assert_array_equal(resumed.columns[name][order], reference.columns[name])


def test_header_torn_before_any_row_starts_over(tmp_path):
    path = tmp_path / "r.tsv"
    path.write_text("# wulff-certify {\"distri")
    assert len(run(path)) == 12


def test_rerun_with_other_settings_is_refused(tmp_path):
    path = tmp_path / "r.tsv"
    run(path, max_inputs=2)
    with pytest.raises(ValueError, match="other settings.*n"):
        run(path, n=300)


def test_shards_partition_the_inputs_and_merge_to_the_single_run(tmp_path):
    single = run(tmp_path / "all.tsv", skip=2)
    paths = [shard_path(tmp_path / "all.tsv", i, 3) for i in range(3)]
    assert paths[1].name == "all.shard-1-of-3.tsv"
    for i, p in enumerate(paths):
        run(p, skip=2, shard=i, num_shards=3)
    parts = [set(read_results(p).columns["index"].tolist()) for p in paths]
    assert set.union(*parts) == set(range(0, 12, 2)) and sum(map(len, parts)) == 6
    merged = merge_results(paths, tmp_path / "merged.tsv")
    again = read_results(tmp_path / "merged.tsv")
    for name in ("index", "prediction", "rho_lower", "radius_l1"):
        np.testing.assert_array_equal(merged.columns[name], single.columns[name])
        np.testing.assert_array_equal(again.columns[name], single.columns[name])


def test_merge_refuses_overlap_missing_inputs_and_mixed_settings(tmp_path):
    a = shard_path(tmp_path / "r.tsv", 0, 2)
    run(a, shard=0, num_shards=2)
    with pytest.raises(ValueError, match="more than once"):
        merge_results([a, a], tmp_path / "m.tsv")
    with pytest.raises(ValueError, match="6 of the run's 12"):
        merge_results([a], tmp_path / "m.tsv")
    assert len(merge_results([a], tmp_path / "m.tsv", allow_partial=True)) == 6
    b = shard_path(tmp_path / "r.tsv", 1, 2)
    run(b, shard=1, num_shards=2, n=300)
    with pytest.raises(ValueError, match="other settings"):
        merge_results([a, b], tmp_path / "m.tsv")


@pytest.mark.parametrize("size, skip, shards", [(10, 1, 1), (10, 3, 2), (7, 2, 4), (3, 5, 2)])
def test_shard_indices_deal_every_kth_input_once(size, skip, shards):
    dealt = [i for s in range(shards) for i in shard_indices(size, skip, s, shards)]
    assert sorted(dealt) == list(range(0, size, skip))


def test_bad_shard_arguments():
    with pytest.raises(ValueError, match="shard"):
        shard_indices(10, 1, 2, 2)
    with pytest.raises(ValueError, match="skip"):
        shard_indices(10, 0, 0, 1)


def test_reading_a_file_that_is_not_a_result_file(tmp_path):
    p = tmp_path / "x.tsv"
    p.write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="not a wulff certification result file"):
        read_results(p)
    with pytest.raises(FileNotFoundError):
        read_results(tmp_path / "missing.tsv")


@pytest.mark.parametrize("kwargs, match", [({"alpha": 2.0}, "alpha"), ({"n0": 500}, "n0"),
                                           ({"batch_size": 0}, "batch_size"),
                                           ({"adversaries": ("l7",)}, "adversary")])
def test_bad_settings_fail_before_any_file_is_written(tmp_path, kwargs, match):
    path = tmp_path / "r.tsv"
    with pytest.raises(ValueError, match=match):
        run(path, **kwargs)
    assert not path.exists()
