"""Cached pipeline steps: a re-run reads them back; a config section reruns its readers only."""

import json
from collections import defaultdict
from pathlib import Path

import pytest

from flows import caching
from flows.pipeline import training_pipeline
from flows.training import train_task
from tabular.config import DatasetConfig, load_config
from tests.conftest import make_toy_frame, write_toy_dataset

FAST = {"n_iter": 2, "search_rows": 2000, "max_epochs": 4, "patience": 2}
EXPLAIN = {"tree_rows": 200, "sample_rows": 40, "background_rows": 20}

#: Prefect task names of the cached steps, and their keys in ``STEP_READS``.
STEPS = {
    "load": "load",
    "validate": "validate",
    "eda": "eda",
    "train": "train",
    "horizon-study": "horizon",
    "training-report": "training-report",
    "explain": "explain",
    "build-bento": "bento",
    "store": "store",
}
#: What every cached step of a toy run is (the toy CSV has no horizon to study).
CACHED = ["load", "validate", "eda", "train", "training-report", "explain", "bento", "store"]
#: The cached steps whose inputs include another step's results.
CONSUMERS = {
    "load": ["validate", "eda", "train", "explain", "store"],
    "train": ["training-report", "explain"],
    "explain": ["bento"],
}


def _reruns(section: str) -> list[str]:
    """The steps a change of one config section must rerun: its readers and their consumers."""
    rerun = {step for step in CACHED if section in caching.STEP_READS[step]}
    while True:
        more = {c for step in rerun for c in CONSUMERS.get(step, [])} - rerun
        if not more:
            return [step for step in CACHED if step in rerun]
        rerun |= more


READS: dict[str, set[str]] = defaultdict(set)


def _step() -> str:
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    return "flow" if context is None else STEPS.get(context.task.name, context.task.name)


class RecordingConfig(DatasetConfig):
    """A dataset config that records which of its fields each pipeline step reads."""

    def __getattribute__(self, name):
        if name in DatasetConfig.model_fields:
            READS[_step()].add(name)
        return super().__getattribute__(name)


def _manifest(result) -> dict:
    return json.loads((result.run_dir / "manifest.json").read_text())


def _run(config: Path, tmp_path: Path, **kwargs) -> dict:
    return _manifest(
        training_pipeline(config_path=str(config), artifacts_dir=str(tmp_path), **kwargs)
    )


@pytest.fixture
def own_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("MONGODB_DB", "mlops_caching")


@pytest.mark.slow
def test_a_rerun_reads_every_step_back_and_a_section_reruns_its_readers(
    prefect_harness, tmp_path, monkeypatch, own_store
):
    # Rows of its own: the session's Prefect cache may hold another test's steps on the
    # default toy rows, and the first run below must compute every step.
    frame = make_toy_frame(seed=86)
    config_path = write_toy_dataset(
        tmp_path / "data", frame, training=FAST, explain=EXPLAIN, seed=13
    )

    # 1. The first run computes every step, with a config that records what each step reads.
    READS.clear()
    recording = RecordingConfig.model_validate(load_config(config_path).model_dump())
    with monkeypatch.context() as patch:
        patch.setattr("flows.pipeline.load_config", lambda path: recording)
        first = _run(config_path, tmp_path)
    assert first["status"] == "succeeded" and first["cached"] == []
    undeclared = {}
    for step, fields in READS.items():
        if step in caching.STEP_READS:  # a field a step reads but does not declare: stale cache
            # ``path`` finds the CSV (its bytes are in the key) and names it in messages.
            declared = {*caching.STEP_READS[step], "path"}
            if fields - declared:
                undeclared[step] = sorted(fields - declared)
    assert undeclared == {}
    assert {"train", "explain", "eda", "validate"} <= set(READS)
    assert "training" in READS["train"] and "explain" in READS["explain"]

    # 2. The same data, config and code: every cached step is read back, and the run folder
    # holds every file (linked from the first run's), with the same results.
    second = _run(config_path, tmp_path)
    assert sorted(second["cached"]) == sorted(CACHED)
    run_dir = tmp_path / "runs" / second["run_id"]
    for output in ("data_docs", "eda", "training", "explain", "report"):
        assert (run_dir / second["outputs"][output]).is_file(), output
    assert (run_dir / "reference.parquet").is_file()
    for key in ("models", "selection", "selected_features", "served_models", "bento", "data_hash"):
        assert second[key] == first[key], key
    assert second["database"]["reused"] and second["database"]["ok"]

    # 3. One section changed: exactly the steps that read it rerun (here the SHAP step), and
    # those that use their results (the Bento of the new models); the others are read back.
    third = _run(config_path, tmp_path, overrides={"explain": {"coverage": 0.7}})
    assert _reruns("explain") == ["explain", "bento"]
    assert [step for step in CACHED if step not in third["cached"]] == _reruns("explain")
    assert third["served_models"] != first["served_models"]  # new models were saved
    assert third["models"] == first["models"]  # the training was read back


def test_a_step_key_follows_its_sections_its_inputs_and_its_code(tmp_path, monkeypatch):
    config = load_config(write_toy_dataset(tmp_path / "data"))
    fn = train_task.fn
    key = caching.step_key("train", fn, {"config": config, "seed": 3})
    assert caching.step_key("train", fn, {"config": config, "seed": 3}) == key
    # A section the step does not read leaves its key; one it reads, or an input, changes it.
    other_explain = config.with_overrides({"explain": {"coverage": 0.5}})
    assert caching.step_key("train", fn, {"config": other_explain, "seed": 3}) == key
    other_training = config.with_overrides({"training": {"n_iter": 2}})
    assert caching.step_key("train", fn, {"config": other_training, "seed": 3}) != key
    assert caching.step_key("train", fn, {"config": config, "seed": 4}) != key
    # The code: every project module the task's module imports, at any depth, lazily or not.
    modules = dict(caching.code_closure("flows.training"))
    assert {"tabular.training", "tabular.features", "reports.training", "reports.page"} <= set(
        modules
    )
    assert "store.transfer" in dict(caching.code_closure("flows.report"))  # imported in a function
    edited = tuple(
        (name, "0" * 64 if name == "tabular.features" else digest)
        for name, digest in caching.code_closure("flows.training")
    )
    monkeypatch.setattr(caching, "code_closure", lambda module: edited)
    assert caching.step_key("train", fn, {"config": config, "seed": 3}) != key
    # A CSV source is its file's bytes: the load step's key follows them.
    load = caching.step_key("load", fn, {"config": config})
    config.csv_path().write_text(config.csv_path().read_text() + "\n", encoding="utf-8")
    assert caching.step_key("load", fn, {"config": config}) != load


#: A change of each config field that still gives a valid toy config.
FIELD_CHANGES = {
    "name": "orders-again",
    "question": "Will this order come back?",
    "description": "Orders of a shop.",
    "row_noun": ["order", "orders"],
    "missing_markers": ["", "NA", "n/a"],
    "prediction_horizon": 0.5,
    "descriptions": {"price": "Price of the order, euros"},
    "split": {"validation_size": 0.25},
    "checks": {"ranges": {"price": [0, 20000]}},
    "features": {"rare_share": 0.05},
    "training": {"n_iter": 3},
    "explain": {"coverage": 0.7},
    "monitoring": {"reference_rows": 5000},
    "seed": 8,
}


def test_a_config_field_changes_the_keys_of_exactly_the_steps_that_read_it(tmp_path):
    config = load_config(write_toy_dataset(tmp_path / "data"))
    expected, found = {}, {}
    for field, value in FIELD_CHANGES.items():
        other = config.with_overrides({field: value})
        expected[field] = sorted(s for s, reads in caching.STEP_READS.items() if field in reads)
        found[field] = sorted(
            step
            for step in caching.STEP_READS
            if caching.config_sections(other, step) != caching.config_sections(config, step)
        )
    assert found == expected
    assert found["checks"] == ["eda", "explain", "store", "validate"]
    assert found["explain"] == ["explain"] and found["monitoring"] == ["explain", "store"]


def test_an_input_without_a_fingerprint_is_not_cached_under_a_wrong_key():
    with pytest.raises(TypeError, match="no cache fingerprint"):
        caching.fingerprint(object(), "train")
    with pytest.raises(TypeError):
        caching.fingerprint(Path("/tmp"), "train")  # output folders are left out, not keyed


def _frame(rows: int):
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(
        {
            "price": np.linspace(0.0, 1.0, rows),
            "count": np.arange(rows, dtype="int64"),
            "channel": pd.Series(["web", None, "store"] * (rows // 3)).astype(object),
            "when": pd.date_range("2021-01-01", periods=rows, freq="min"),
            "level": pd.Categorical(["a", "b", "c"] * (rows // 3)),
        }
    )
    frame.attrs["missing_markers"] = {"channel": {"": rows // 3}}
    return frame


def test_file_pickle_writes_the_arrays_to_a_file_and_reads_back_the_same_result(tmp_path):
    import pandas as pd
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    frame = _frame(300_000)
    serializer = caching.FilePickle()
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path}):
        blob = serializer.dumps(frame)
        files = list((tmp_path / caching.RESULT_FILES).iterdir())
        # Prefect's record holds a name and a layout; the file holds the numbers.
        assert len(blob) < 500 and len(files) == 1
        assert files[0].stat().st_size > frame["price"].nbytes + frame["count"].nbytes
        back = serializer.loads(blob)
        pd.testing.assert_frame_equal(back, frame)
        assert back.attrs == frame.attrs
        assert back["channel"].iloc[1] is None  # not turned into NaN
        back.loc[0, "price"] = -1.0  # the arrays read back are writable
        # A file that is gone or cut short is a missing result, not a wrong one.
        files[0].write_bytes(files[0].read_bytes()[:1000])
        with pytest.raises(caching.ResultFileMissing, match="truncated"):
            serializer.loads(blob)
        files[0].unlink()
        with pytest.raises(caching.ResultFileMissing, match="missing"):
            serializer.loads(blob)


def test_a_step_whose_result_file_is_gone_runs_again(prefect_harness, tmp_path):
    from prefect import flow, task
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    calls = []

    @task(cache_key_fn=lambda *_: f"file-pickle-{tmp_path.name}",
          result_serializer=caching.FilePickle(), cache_result_in_memory=False)  # fmt: skip
    def make(rows: int):
        calls.append(rows)
        return _frame(rows)

    @flow
    def run(rows: int):
        outcome = caching.run_step(make, rows)
        return outcome.cached, outcome.value

    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path}):
        assert run(3000)[0] is False
        cached, value = run(3000)
        assert cached is True and len(calls) == 1 and len(value) == 3000
        for path in (tmp_path / caching.RESULT_FILES).iterdir():
            path.unlink()
        cached, value = run(3000)
        assert cached is False and len(calls) == 2 and len(value) == 3000


def test_file_pickle_on_a_full_disk_raises_and_leaves_no_file(tmp_path, monkeypatch):
    import errno
    import io

    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    class FullDisk(io.FileIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(caching, "open", lambda path, mode: FullDisk(path, mode), raising=False)
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path}):
        with pytest.raises(OSError, match="No space left"):
            caching.FilePickle().dumps(_frame(3000))
    assert list((tmp_path / caching.RESULT_FILES).iterdir()) == []
