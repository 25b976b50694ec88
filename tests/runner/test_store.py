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
    RecordError,
    RunLocked,
    RunStore,
    StoreError,
    decode_array,
    encode_array,
    load,
)


def _record(i, status="ok", value=-1.5):
    return {"id": f"{i:016x}", "status": status, "seed": i,
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
    json.loads(store.path("0000000000000002").read_text())
    df = load(tmp_path / "run")
    assert list(df.columns[:4]) == ["run", "commit", "machine", "device"]
    assert set(df["status"]) == {"ok", "failed"}
    assert df.loc[df["status"] == "failed", "metric"].isna().all()
    assert df.loc[df["cell_id"] == "0000000000000000", "value"].item() == -1.5


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
    store.path("0000000000000001").write_text('{"id": "0000000000000001", "sta')
    records, moved = store.scan()
    assert list(records) == ["0000000000000000"]
    [(path, why)] = moved
    assert path.parent == tmp_path / "run" / "corrupt" and path.read_text().startswith("{")
    assert "malformed record" in why and not store.has("0000000000000001")


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


def test_a_planned_cell_id_is_what_the_store_accepts():
    from densbench.runner.plan import Cell, Spec
    from densbench.runner.store import CELL_ID

    assert CELL_ID.fullmatch(Cell(Spec("kde", {"bandwidth": 0.1}), Spec("banana"), 3).id)


def _bomb():
    """An encoded array that says it holds 2 values and inflates to 64 MiB."""
    import base64
    import zlib

    packed = zlib.compress(b"\0" * (64 << 20), 9)
    return {"dtype": "<f8", "n": 2, "encoding": "zlib+base64",
            "data": base64.b64encode(packed).decode()}


def _without(key):
    def edit(rec):
        del rec[key]
    return edit


def _set(**fields):
    def edit(rec):
        for path, value in fields.items():
            *parents, last = path.split("__")
            obj = rec
            for part in parents:
                obj = obj[part]
            obj[last] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (_without("estimator"), "estimator is missing"),
    (_set(id="../../x"), "id must be 16 hex digits"),
    (_set(id="/tmp/abs"), "id must be 16 hex digits"),
    (_set(seed="0"), "seed must be an integer; got a string"),
    (_set(seed=True), "seed must be an integer; got true or false"),
    (_set(status=["ok"]), "status must be a string; got a list"),
    (_set(estimator__name=7), "estimator.name must be a string; got an integer"),
    (_set(dataset__params=[1]), "dataset.params must be an object"),
    (_set(metrics=["test_loglik"]), "metrics[0] must be an object"),
    (_set(metrics=[{"metric": "m", "value": "-1.5"}]), "metrics[0].value must be an integer "
                                                        "or a number or null"),
    (_set(data={"info": {"name": "x", "dim": 2, "kind": "continuous", "levels": None,
                         "params": {}, "protocol_notes": {}, "image_shape": [8, "8"]}}),
     "data.info.image_shape must be 1 to 4 positive integers"),
    (_set(per_example={"test_loglik": {"dtype": "|O", "n": 1, "encoding": "zlib+base64",
                                       "data": ""}}), "dtype '<f8'"),
    (_set(per_example={"test_loglik": _bomb()}), "do not hold exactly n = 2 values"),
    (_set(samples_preview={"shape": [3, 2], **encode_array(np.zeros(4))}),
     "samples_preview holds 4 values, not 6"),
    (_set(metrics=[{"metric": "m", "value": math.inf}]), "metrics[0].value must be finite"),
    (_set(metrics=[{"metric": "m", "value": 1.0, "se": -0.5}]), "metrics[0].se must be finite "
                                                                 "and >= 0"),
    (_set(data={"dim": 64, "info": {"name": "x", "dim": 64, "kind": "discrete", "levels": 17,
                                    "params": {}, "protocol_notes": {}, "image_shape": [3, 3]}}),
     "data.info.image_shape [3, 3] does not hold the data's dimension 64"),
    (_set(device={"type": "cuda"}), "device must be a string or null; got an object"),
])
def test_load_checks_every_record_and_names_its_file_and_field(tmp_path, edit, message):
    store = RunStore(tmp_path / "run", create=True)
    store.write(_record(0))
    rec = _record(1)
    edit(rec)
    path = store.cells_dir / "0000000000000001.json"
    path.write_text(json.dumps(rec))
    with pytest.raises(RecordError) as err:
        load(tmp_path / "run")
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)
    records, skipped = store.checked_records()
    assert [r["id"] for r in records] == ["0000000000000000"]
    assert [p for p, _ in skipped] == [path]


def test_a_record_under_another_name_than_its_id_is_refused(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    (store.cells_dir / "00000000000000ff.json").write_text(json.dumps(_record(1)))
    with pytest.raises(RecordError, match="its id 0000000000000001 is not its file name"):
        load(tmp_path / "run")


def _contend(root, barrier, held, trials):
    """One of several processes taking a run's lock at the same instant, ``trials`` times;
    the one that gets it holds it until every other one has tried."""
    store = RunStore(root)
    for _ in range(trials):
        barrier.wait()  # the parent has laid a stale lock
        try:
            with store.lock():
                with held.get_lock():
                    held.value += 1
                barrier.wait()
        except RunLocked:
            barrier.wait()
        barrier.wait()  # the parent has counted the holders


@pytest.mark.slow
def test_processes_racing_for_a_stale_lock_leave_exactly_one_holder(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    root = tmp_path / "run"
    RunStore(root, create=True)
    n, trials = 3, 30
    barrier, held = ctx.Barrier(n + 1, timeout=30), ctx.Value("i", 0)
    procs = [ctx.Process(target=_contend, args=(root, barrier, held, trials))
             for _ in range(n)]
    for proc in procs:
        proc.start()
    holders = []
    try:
        # a stale lock that takes milliseconds to read: a scheme that reads a lock to judge
        # it stale, then removes it, races even where the contenders rarely run at the
        # same instant (a loaded machine)
        stale = json.dumps({"pid": _dead_pid(), "host": HOST, "since": "earlier",
                            "padding": "x" * (2 << 20)})
        for _ in range(trials):
            (root / ".lock").write_text(stale)
            held.value = 0
            barrier.wait()
            barrier.wait()
            holders.append(held.value)
            barrier.wait()
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                os.kill(proc.pid, 9)
                proc.join()
    assert holders == [1] * trials, holders
    assert [proc.exitcode for proc in procs] == [0] * n


def test_one_dataset_under_two_settings_is_two_configurations_never_two_seeds(tmp_path):
    from densbench.report.tables import aggregate_seeds

    store = RunStore(tmp_path / "run", create=True)
    for i, (params, value) in enumerate([({}, -1.0), ({"n_train": 500}, -3.0)]):
        rec = _record(i, value=value)
        rec.update(seed=0, dataset={"name": "banana", "params": params})
        store.write(rec)
    table = aggregate_seeds(load(tmp_path / "run"))
    assert sorted(table["n_seeds"]) == [1, 1]
    assert sorted(table["mean"]) == [-3.0, -1.0]
    assert set(table["dataset"]) == {"banana", 'banana {"n_train": 500}'}


def _run(root, commit, host, values):
    root.parent.mkdir(parents=True, exist_ok=True)
    store = RunStore(root, create=True)
    store.write_manifest({"git_commit": commit, "machine": {"hostname": host}})
    for i, value in enumerate(values):
        store.write({**_record(i, value=value), "device": "cpu"})
    return root


def test_load_of_several_runs_is_one_table_with_a_run_column(tmp_path):
    a = _run(tmp_path / "x" / "run", "abc123", "box1", [-1.0, -2.0])
    b = _run(tmp_path / "y" / "run", None, "box2", [-3.0])
    c = _run(tmp_path / "other", "def456", "box1", [])
    df = load(a, b, c)
    assert df.equals(load([a, b, c]))
    assert df.groupby("run", sort=False)["value"].apply(list).to_dict() == {
        "x/run": [-1.0, -2.0], "y/run": [-3.0]}  # runs in the order given, none from c
    commits = df.drop_duplicates("run").set_index("run")["commit"]
    assert commits["x/run"] == "abc123" and commits.isna()["y/run"]
    assert df.groupby("run")["machine"].first().to_dict() == {"x/run": "box1", "y/run": "box2"}
    assert (df["device"] == "cpu").all() and (df["unit"] == "nats/example").all()
    assert (df["seed"].dtype, df["value"].dtype) == (np.int64, np.float64)
    one = load(a)  # one run: the same columns, the run named by its folder alone
    assert list(one.columns) == list(df.columns) and set(one["run"]) == {"run"}
    assert one.drop(columns="run").equals(
        df[df["run"] == "x/run"].drop(columns="run").reset_index(drop=True))
    empty = load(c)
    assert empty.empty and (empty["seed"].dtype, empty["value"].dtype) == (np.int64, np.float64)


def test_load_names_a_run_given_twice_and_a_malformed_manifest(tmp_path):
    a = _run(tmp_path / "run", "abc", "box", [-1.0])
    with pytest.raises(StoreError, match="run folder given twice"):
        load(a, tmp_path / "." / "run")
    with pytest.raises(StoreError, match="no run folder given"):
        load([])
    (a / "manifest.json").write_text(json.dumps({"git_commit": 7}))
    with pytest.raises(StoreError, match="git_commit must be a string or null"):
        load(a)
    (a / "manifest.json").write_text(json.dumps({"machine": {"hostname": ["h"]}}))
    with pytest.raises(StoreError, match="machine.hostname must be a string or null"):
        load(a)
