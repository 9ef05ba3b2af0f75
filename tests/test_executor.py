"""The executor interface: choosing one from the vault config and the command line, and
the local implementation behind it (no Ray needed here)."""

from __future__ import annotations

import os

import pytest
from helpers import corpus_images

from sisafs.errors import ConfigError, UsageError
from sisafs.formats import codec
from sisafs.pipeline import worker
from sisafs.pipeline.executor import ExecutorSpec, make_executor
from sisafs.pipeline.pool import WorkerPool
from sisafs.pipeline.worker import WorkerConfig


def test_spec_defaults_to_local_with_vault_workers():
    spec = ExecutorSpec.from_settings({"workers": 3})
    assert (spec.kind, spec.workers, spec.address) == ("local", 3, None)


def test_spec_from_vault_config_and_override():
    settings = {"workers": 4, "executor": {"kind": "ray", "address": "10.0.0.5:6379"}}
    spec = ExecutorSpec.from_settings(settings)
    assert (spec.kind, spec.address, spec.workers) == ("ray", "10.0.0.5:6379", 0)
    assert ExecutorSpec.from_settings({"executor": "ray"}).kind == "ray"
    assert spec.override(kind="local").kind == "local"
    assert spec.override(address="127.0.0.1:1").address == "127.0.0.1:1"
    assert spec.override(workers=2).workers == 2
    with pytest.raises(UsageError):
        ExecutorSpec().override(address="127.0.0.1:1")  # --ray-address without ray
    with pytest.raises(UsageError):
        spec.override(workers=0)


@pytest.mark.parametrize("bad", [{"kind": "spark"}, {"kind": "ray", "adress": "x"},
                                 {"workers": -1}, {"remote": "all"}, {"gpus_per_worker": "1"},
                                 ["ray"]])
def test_spec_refuses_bad_config(bad):
    with pytest.raises(ConfigError):
        ExecutorSpec.from_settings({"executor": bad})


def test_without_keys_strips_keys():
    cfg = WorkerConfig(b"k" * 32, 4, state_key=b"s" * 32)
    stripped = cfg.without_keys()
    assert stripped.image_key == b"" and stripped.state_key == b""
    assert stripped.level == 4 and stripped.people_plain


def test_without_keys_sends_people_store_opened():
    """A detect-only worker can still match enrolled people, without the state key."""
    import numpy as np

    from sisafs.people import PeopleStore
    from sisafs.vault.keys import VaultKeys

    keys = VaultKeys.from_master(os.urandom(32))
    store = PeopleStore({"alice": [np.zeros(128)]})
    sealed = store.dump(lambda b: keys.seal_state(b, b"people"))
    cfg = WorkerConfig(keys.image, 3, people_blob=sealed, state_key=keys.state)
    stripped = cfg.without_keys()
    assert stripped.state_key == b"" and stripped.people_blob != sealed
    assert PeopleStore.load(stripped.people_blob, lambda b: b).names() \
        == ["alice"]


def test_split_job_equals_whole_job(corpus):
    """choose_regions + seal (what a detect-only worker and the key holder do) gives
    the same regions and a record that restores, like protect_image."""
    key = os.urandom(32)
    data = corpus_images()[0].read_bytes()
    worker.init_worker(WorkerConfig(key, 3))
    choice = worker.choose_regions(data)
    split = worker.seal(data, choice, key)
    whole = worker.protect_image(data)
    assert split.labels == whole.labels and split.path == whole.path
    assert codec.restore(split.data, key) == data
    # the whole job reports where its CPU went (bench/stage_cost.py prints it)
    assert {"decode for detection", "detect faces", "rank", "self-check"} <= set(whole.costs)
    assert not split.costs  # only protect_image measures


def test_local_executor_protects_and_fails_cleanly(corpus):
    key = os.urandom(32)
    ex = make_executor(WorkerConfig(key, 3), ExecutorSpec(workers=1))
    assert isinstance(ex, WorkerPool) and ex.kind == "local" and ex.workers == 1
    try:
        data = corpus_images()[1].read_bytes()
        assert codec.restore(ex.protect(data).data, key) == data
        with pytest.raises(Exception, match="not an image format sisafs protects"):
            ex.protect(b"plain text")
    finally:
        ex.shutdown()


def test_local_worker_writes_out_and_an_orphan_removes_it(tmp_path, monkeypatch):
    """With `out`, a local worker writes the protected image there (0600) and returns no
    bytes; a worker whose daemon died meanwhile (its parent pid changed) removes it."""
    from sisafs.pipeline import pool

    key = os.urandom(32)
    data = corpus_images()[1].read_bytes()
    worker.init_worker(WorkerConfig(key, 3, detectors={"faces": False, "people": False,
                                                       "text": False, "identity": False}))
    out = tmp_path / "out"
    monkeypatch.setattr(pool, "_parent", os.getppid())
    result = pool._protect(data, "", str(out))
    assert result.data == b"" and result.written == str(out)
    assert out.stat().st_mode & 0o777 == 0o600
    assert codec.restore(out.read_bytes(), key) == data
    out.unlink()
    monkeypatch.setattr(pool, "_parent", -1)  # the daemon is gone
    pool._protect(data, "", str(out))
    assert not out.exists()
