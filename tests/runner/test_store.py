import json
import math

import numpy as np
import pytest

from densbench.runner.store import RunStore, StoreError, decode_array, encode_array, load


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


def test_stale_temporaries_are_removed_on_open(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    (store.cells_dir / ".abc.json.123.tmp").write_text("{half")
    RunStore(tmp_path / "run", create=True)
    assert not list(store.cells_dir.glob(".*.tmp"))
    assert load(tmp_path / "run").empty


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
