import json
import math
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from densbench.runner.store import (
    HOST,
    RunLocked,
    RunStore,
    StoreError,
    decode_array,
    encode_array,
    load,
)


def _record(i, status="ok", value=-1.5):
    return {"id": f"c{i:015d}", "status": status, "seed": i,
            "estimator": {"name": "kde", "params": {"bandwidth": 0.1}},
            "dataset": {"name": "banana", "params": {}}, "likelihood_kind": "exact",
            "figure": "log-density (continuous data)", "error": None if status == "ok" else "E",
            "metrics": [{"metric": "test_loglik", "value": value, "se": 0.1,
                         "unit": "nats/example"}] if status == "ok" else []}


def test_encode_roundtrip_is_exact():
    v = np.random.default_rng(0).standard_normal(1000) * 100
    np.testing.assert_array_equal(decode_array(json.loads(json.dumps(encode_array(v)))), v)


def test_write_is_atomic_and_load_is_tidy(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    store.write(_record(0))
    store.write(_record(1, status="failed"))
    store.write(_record(2, value=math.nan))  # non-finite -> null, never invalid JSON
    assert not list(store.cells_dir.glob(".*tmp"))
    json.loads(store.path("c000000000000002").read_text())
    df = load(tmp_path / "run")
    assert list(df.columns[:3]) == ["cell_id", "estimator", "params"]
    assert set(df["status"]) == {"ok", "failed"}
    assert df.loc[df["status"] == "failed", "metric"].isna().all()
    assert df.loc[df["cell_id"] == "c000000000000000", "value"].item() == -1.5


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_temporaries_of_dead_writers_are_removed_on_open(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    dead = store.cells_dir / f".abc.json~{HOST}~{_dead_pid()}~x1.tmp"
    live = store.cells_dir / f".abc.json~{HOST}~{os.getpid()}~x2.tmp"
    other_host = store.cells_dir / f".abc.json~elsewhere.example~{_dead_pid()}~x3.tmp"
    for tmp in (dead, live, other_host):
        tmp.write_text("{half")
    RunStore(tmp_path / "run", create=True)
    assert not dead.exists()
    assert live.exists() and other_host.exists()  # another writer's work in flight
    assert load(tmp_path / "run").empty


def test_opening_a_run_folder_never_breaks_a_write_in_flight(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    errors = []

    def write_many():
        try:
            for i in range(300):
                store.write(_record(i % 7))
        except Exception as exc:  # a temporary removed under the writer
            errors.append(exc)

    writer = threading.Thread(target=write_many)
    writer.start()
    while writer.is_alive():
        RunStore(tmp_path / "run", create=True)
    writer.join()
    assert errors == []
    assert len(store.records()) == 7


def test_one_writer_per_run_folder(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    with store.lock():
        holder = json.loads((tmp_path / "run" / ".lock").read_text())
        assert (holder["pid"], holder["host"]) == (os.getpid(), HOST)
        with pytest.raises(RunLocked, match=f"pid {os.getpid()} on {HOST}"):
            with RunStore(tmp_path / "run", create=True).lock():
                pass
    assert not (tmp_path / "run" / ".lock").exists()
    # a lock left by a writer that died on this host is stale: taken over
    (tmp_path / "run" / ".lock").write_text(json.dumps({"pid": _dead_pid(), "host": HOST}))
    with store.lock():
        assert json.loads((tmp_path / "run" / ".lock").read_text())["pid"] == os.getpid()
    # one held on another host cannot be checked: refused
    (tmp_path / "run" / ".lock").write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with pytest.raises(RunLocked, match="pid 1 on elsewhere"):
        with store.lock():
            pass


def test_a_corrupt_record_is_moved_aside(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    store.write(_record(0))
    store.path("c000000000000001").write_text('{"id": "c000000000000001", "sta')
    records, moved = store.scan()
    assert list(records) == ["c000000000000000"]
    [(path, why)] = moved
    assert path.parent == tmp_path / "run" / "corrupt" and path.read_text().startswith("{")
    assert "malformed record" in why and not store.has("c000000000000001")


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(StoreError, match="parent does not exist"):
        RunStore(tmp_path / "no" / "such", create=True)
    with pytest.raises(StoreError, match="no such run folder"):
        load(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="not a densbench run folder"):
        load(tmp_path / "plain")
    store = RunStore(tmp_path / "run", create=True)
    store.path("bad").write_text("{not json")
    with pytest.raises(StoreError, match="malformed record"):
        load(tmp_path / "run")
