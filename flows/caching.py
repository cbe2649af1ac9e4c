"""Cache keys of the pipeline's steps: a step reruns only when something it reads changed.

A step's key (:class:`StepCache`, a Prefect cache policy) is the SHA-256 of

* its **code**: the source of every project module its task's module imports, directly or
  not, at any depth, read from the import statements (:func:`code_fingerprint`), and the
  versions of the libraries that shape results (``tabular.manifest.TRACKED_PACKAGES``);
* the **config sections it reads** (:data:`STEP_READS`), and nothing else of the config:
  changing ``explain.coverage`` reruns the SHAP step and what consumes its results, not the
  training; a test records every config field each step really reads and checks it is
  declared here;
* its **other inputs**, each by a fingerprint (:func:`fingerprint`): a frame by its data
  hash, a split by its parts' hashes and folds, an upstream step's result by that step's
  own key (its ``lineage``), a CSV source by the file's bytes. Output folders are not
  part of the key.

Prefect persists each step's result under its key (``$PREFECT_HOME/storage``; the loaded
rows go to a file of their own, :class:`FilePickle`, without Prefect's in-memory copies);
a second run with the same key reads it back instead of running the step. The files a step wrote
(reports, figures, Data Docs) stay in the run folder that first computed them: on a cache
hit the pipeline checks they still exist (else it reruns the step) and hard-links them
into the new run's folder (:func:`run_step`).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.util
import json
import os
import pickle
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd
from prefect.cache_policies import CachePolicy
from prefect.serializers import Serializer
from prefect.settings import get_current_settings
from pydantic import Field

from tabular.config import DatasetConfig
from tabular.datasets import Split, data_hash
from tabular.features import EncodingPlan
from tabular.manifest import TRACKED_PACKAGES, package_versions

#: Top-level packages of this project: their modules are part of a step's code.
PROJECT_PACKAGES = ("tabular", "reports", "validation", "store", "bentos", "monitoring", "flows")

#: The config fields each cached step reads (the test ``test_caching`` records the fields
#: each step really reads on a run and fails if one is missing here). Changing a field
#: reruns exactly the steps that list it, and the steps that consume their results.
#: ``path`` (where the config file is) is no field of a key: it only locates the CSV, whose
#: bytes are keyed, and names the file in messages.
STEP_READS: dict[str, tuple[str, ...]] = {
    "load": (
        "name", "source", "target", "date_column", "date_from", "missing_markers",
        "prediction_horizon", "categorical", "numeric", "point_in_time", "id_columns",
        "leakage", "drop_rows_missing",
    ),
    "validate": (
        "name", "target", "date_column", "date_from", "prediction_horizon", "categorical",
        "numeric", "point_in_time", "id_columns", "leakage", "drop_rows_missing", "checks",
    ),
    "eda": (
        "name", "question", "description", "row_noun", "target", "date_column", "date_from",
        "prediction_horizon", "categorical", "numeric", "point_in_time", "id_columns",
        "leakage", "drop_rows_missing", "missing_markers", "features", "split", "checks",
        "seed",
    ),
    "train": (
        "target", "date_column", "prediction_horizon", "categorical", "numeric",
        "point_in_time", "row_noun", "split", "features", "training",
    ),
    "horizon": (
        "name", "source", "target", "date_column", "date_from", "missing_markers",
        "prediction_horizon", "categorical", "numeric", "point_in_time", "id_columns",
        "leakage", "drop_rows_missing", "split", "features", "training",
    ),
    "training-report": (
        "question", "row_noun", "target", "date_column", "prediction_horizon", "split",
        "training",
    ),
    "explain": (
        "name", "question", "description", "row_noun", "target", "date_column", "date_from",
        "prediction_horizon", "categorical", "numeric", "point_in_time", "id_columns",
        "leakage", "descriptions", "split", "checks", "features", "training", "explain",
        "monitoring", "seed",
    ),
    # The stored schema keeps the config's checks (records are held to them) and the store
    # step applies monitoring.log_retention_days.
    "store": (
        "name", "target", "date_column", "date_from", "prediction_horizon", "categorical",
        "numeric", "point_in_time", "id_columns", "leakage", "drop_rows_missing", "checks",
        "monitoring",
    ),
    # The Bento bundles the project's code and its two models: keyed on every project file.
    "bento": (),
}  # fmt: skip

#: Steps whose code is the whole project (the Bento copies every module, whatever imports it).
WHOLE_PROJECT = frozenset({"bento"})


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # ``from module import name``: a name, not a module
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


#: One ``ast.parse`` at a time: Python 3.11's AST constructor keeps its recursion depth in
#: state shared by threads, and steps computing their keys side by side failed with
#: "SystemError: AST constructor recursion depth mismatch" (CPython gh-106905).
_PARSE_LOCK = threading.RLock()


def _imports(name: str, path: Path) -> set[str]:
    """Project modules named by the import statements of one module, anywhere in it."""
    source = path.read_text(encoding="utf-8")
    with _PARSE_LOCK:
        tree = ast.parse(source)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # a relative import
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            # ``from tabular import training`` names a module too.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    modules = set()
    for candidate in found:
        if candidate.split(".")[0] not in PROJECT_PACKAGES:
            continue
        # A module and the packages above it (their __init__ runs first).
        parts = candidate.split(".")
        for depth in range(1, len(parts) + 1):
            module = ".".join(parts[:depth])
            if _module_file(module) is not None:
                modules.add(module)
    return modules


@cache
def code_closure(module: str) -> tuple[tuple[str, str], ...]:
    """Every project module a module imports, at any depth, with the SHA-256 of its source.

    Args:
        module: A module name, e.g. ``flows.training``.

    Returns:
        ``(module, sha256)`` pairs, sorted by module name.
    """
    seen: dict[str, str] = {}
    stack = [module]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        stack.extend(sorted(_imports(name, path) - set(seen)))
    return tuple(sorted(seen.items()))


def code_fingerprint(fn: Callable, whole_project: bool = False) -> str:
    """Fingerprint the code a task runs: its module's import closure and the library versions.

    Args:
        fn: The task's function.
        whole_project: Every project file instead (and ``bentofile.yaml``).

    Returns:
        A SHA-256 hex digest.
    """
    modules = _project_files() if whole_project else code_closure(fn.__module__)
    return _digest({"modules": modules, "packages": _library_versions()})


@lru_cache(maxsize=1)
def _project_files() -> tuple[tuple[str, str], ...]:
    root = Path(__file__).resolve().parent.parent
    paths = [root / "bentofile.yaml"] + [
        path for package in PROJECT_PACKAGES for path in sorted((root / package).rglob("*.py"))
    ]
    return tuple(
        (str(path.relative_to(root)), hashlib.sha256(path.read_bytes()).hexdigest())
        for path in paths
        if path.is_file()
    )


@lru_cache(maxsize=1)
def _library_versions() -> tuple[tuple[str, str], ...]:
    return tuple(sorted(package_versions(TRACKED_PACKAGES).items()))


def config_sections(config: DatasetConfig, step: str) -> dict[str, Any]:
    """Return the part of the config a step reads (see :data:`STEP_READS`), as JSON data.

    A CSV source is also identified by its file's bytes, a built-in loader by the version
    of the package that ships its data.

    Args:
        config: The dataset config.
        step: The step's name.

    Returns:
        The fields, by name.
    """
    reads = STEP_READS[step]
    sections = config.model_dump(mode="json", include=set(reads))
    if "source" in reads:
        if config.source.loader is not None:
            from tabular.loaders import get_loader

            package = get_loader(config.source.loader).package
            sections["source_data"] = package_versions((package,))[package]
        else:
            sections["source_data"] = _file_digest(config.csv_path())
    return sections


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(value: Any, step: str) -> Any:
    """Return JSON data that changes exactly when a step input changes.

    Args:
        value: A task input.
        step: The step's name (a config is reduced to the sections it reads).

    Returns:
        The fingerprint.

    Raises:
        TypeError: For a value of no known kind: the step is then not cached (Prefect logs
            the error and runs it), rather than cached under a wrong key.
    """
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, DatasetConfig):
        return config_sections(value, step)
    if isinstance(value, pd.DataFrame):
        return {"frame": data_hash(value)}
    if isinstance(value, Split):
        return {
            "train": data_hash(value.train),
            "test": data_hash(value.test),
            "folds": [
                [f.name, _array_digest(f.train), _array_digest(f.validation)] for f in value.folds
            ],
        }
    if isinstance(value, EncodingPlan):
        return value.to_dict()
    lineage = getattr(value, "lineage", None)
    if lineage:
        return {"lineage": lineage}
    if isinstance(value, dict):
        return {str(k): fingerprint(v, step) for k, v in sorted(value.items(), key=str)}
    if isinstance(value, list | tuple):
        return [fingerprint(v, step) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: fingerprint(getattr(value, f.name), step) for f in dataclasses.fields(value)
        }
    raise TypeError(f"no cache fingerprint for a {type(value).__name__} input")


def _array_digest(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def step_key(step: str, fn: Callable, inputs: dict[str, Any], ignore: Iterable[str] = ()) -> str:
    """Compute a step's cache key from its code, the config sections it reads and its inputs.

    Args:
        step: The step's name (a key of :data:`STEP_READS`).
        fn: The task's function.
        inputs: The task's inputs, by parameter name.
        ignore: Inputs that do not change the result (output folders, the run id).

    Returns:
        A SHA-256 hex digest.
    """
    skipped = set(ignore)
    return _digest(
        {
            "step": step,
            "code": code_fingerprint(fn, whole_project=step in WHOLE_PROJECT),
            "inputs": {
                name: fingerprint(value, step)
                for name, value in sorted(inputs.items())
                if name not in skipped
            },
        }
    )


@dataclass
class StepCache(CachePolicy):
    """Prefect cache policy of a pipeline step: keyed on its inputs and its code.

    Attributes:
        step: The step's name (a key of :data:`STEP_READS`).
        ignore: Inputs left out of the key (output folders, the run id).
    """

    step: str = ""
    ignore: tuple[str, ...] = ()

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str | None:
        """Return the step's key (:func:`step_key`); ``None`` outside a task run."""
        if task_ctx is None:
            return None
        return step_key(self.step, task_ctx.task.fn, inputs or {}, self.ignore)


def current_key() -> str | None:
    """Return the cache key of the step running now (its results carry it as ``lineage``).

    Returns:
        The key, or ``None`` when the step runs uncached (called outside a flow, in a test).
    """
    from prefect.transactions import get_transaction

    transaction = get_transaction()
    return transaction.key if transaction is not None else None


#: Folder, under Prefect's local result storage, of the files :class:`FilePickle` writes.
RESULT_FILES = "files"
#: Each part of a :class:`FilePickle` file starts at a multiple of this many bytes.
_ALIGN = 64


class ResultFileMissing(FileNotFoundError):
    """A cached result's file is gone or cut short: Prefect then runs the step again."""


class FilePickle(Serializer):
    """Pickles a step's result into a file of its own, beside Prefect's record of it.

    Prefect's pickle serializer returns the pickle as base64 text, which its record then
    holds in a JSON document: for the loaded rows of a 1,000,000-row CSV (a 0.37 GB pickle)
    the pickle, its base64, the JSON text and its bytes were in memory together, and the
    load step peaked at 3.2 GB. Here the result is pickled with protocol 5: its arrays go
    to the file straight from their memory (out-of-band buffers, no copy), the rest as a
    small pickle, and the record holds the file's name and layout. Reading it back makes
    one copy of each array. The files live in ``<local result storage>/files`` (Prefect's
    own folder, ``$PREFECT_HOME/storage``): deleting that folder clears both.
    """

    type: str = Field(default="mlops-file-pickle", frozen=True)

    @staticmethod
    def folder() -> Path:
        """Where the result files are (under Prefect's local result storage)."""
        return Path(get_current_settings().results.local_storage_path) / RESULT_FILES

    def dumps(self, obj: Any) -> bytes:
        """Write ``obj`` to a new file (atomically: a temporary name, then renamed)."""
        buffers: list[pickle.PickleBuffer] = []
        head = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        folder = self.folder()
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{uuid.uuid4().hex}.pickle"
        layout, offset = [], 0
        temporary = folder / f".{name}.tmp"
        try:
            with open(temporary, "wb") as handle:
                for part in [memoryview(head), *(buffer.raw() for buffer in buffers)]:
                    padding = -offset % _ALIGN
                    handle.write(b"\0" * padding)
                    offset += padding
                    handle.write(part)
                    layout.append([offset, part.nbytes])
                    offset += part.nbytes
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, folder / name)
        except BaseException:  # a full disk: no half-written file is left behind
            temporary.unlink(missing_ok=True)
            raise
        return json.dumps({"file": name, "parts": layout}).encode()

    def loads(self, blob: bytes) -> Any:
        """Read a result back from the file the record names.

        Raises:
            ResultFileMissing: If the file is gone or shorter than its layout.
        """
        record = json.loads(blob)
        path = self.folder() / record["file"]
        try:
            handle = open(path, "rb")
        except FileNotFoundError as exc:
            raise ResultFileMissing(f"cached result file {path} is missing") from exc
        parts = []
        with handle:
            for offset, size in record["parts"]:
                part = bytearray(size)
                handle.seek(offset)
                if handle.readinto(part) != size:
                    raise ResultFileMissing(f"cached result file {path} is truncated")
                parts.append(part)
        return pickle.loads(parts[0], buffers=parts[1:])


@dataclass(frozen=True)
class StepRun:
    """What :func:`run_step` did.

    Attributes:
        value: The step's result.
        cached: Whether it was read back from a previous run instead of computed.
    """

    value: Any
    cached: bool


def run_step(
    task,
    *args,
    files: Callable[[Any], list[tuple[Path, Path]]] | None = None,
    usable: Callable[[Any], bool] | None = None,
    **kwargs,
) -> StepRun:
    """Run a cached step; on a cache hit, bring the files it wrote into this run's folder.

    A cached result is used only if it is still usable: every file it wrote exists, and
    ``usable`` agrees (the models it saved are still in the model store, the store import
    it proves succeeded). Otherwise the step runs again and its cache entry is replaced.

    Args:
        task: The Prefect task (cache policy :class:`StepCache`).
        *args: Its positional inputs.
        files: For a result, the ``(folder or file it wrote, where this run wants it)``
            pairs; on a cache hit each is hard-linked (copied across file systems) there.
        usable: Whether a cached result can still be used.
        **kwargs: Its keyword inputs.

    Returns:
        The result, and whether it was cached.
    """
    state = task(*args, return_state=True, **kwargs)
    return _settle(state, task, args, kwargs, files, usable)


def _settle(state, task, args, kwargs, files, usable) -> StepRun:
    """Use a step's final state: a fresh result as it is, a cached one checked and linked."""
    value = state.result()
    if state.name != "Cached":
        return StepRun(value, cached=False)
    pairs = files(value) if files is not None else []
    if not all(source.exists() for source, _ in pairs) or (usable and not usable(value)):
        state = task.with_options(refresh_cache=True)(*args, return_state=True, **kwargs)
        return StepRun(state.result(), cached=False)
    for source, target in pairs:
        link_tree(source, target)
    return StepRun(value, cached=True)


class BackgroundStep:
    """A cached step submitted to the flow's task runner, to run alongside the next steps.

    Args:
        task: The Prefect task.
        *args: Its positional inputs.
        files: As for :func:`run_step`.
        usable: As for :func:`run_step`.
        **kwargs: Its keyword inputs.
    """

    def __init__(self, task, *args, files=None, usable=None, **kwargs):
        self._call = (task, args, kwargs, files, usable)
        self.submitted = time.time()
        self.future = task.submit(*args, **kwargs)
        self.future.add_done_callback(self._release_inputs)

    def _release_inputs(self, future) -> None:
        """Drop the step's inputs once it ran afresh: only a cached result runs it again.

        A cached result found unusable reruns the step with its inputs; a fresh one never
        does. Dropping them lets the flow free what only this step still reads (the rows
        the store step imported, while the training goes on).
        """
        future.wait(0)  # it is done: this reads the run's final state from it, not the API
        state = future.state
        if state is not None and state.is_final() and state.name != "Cached":
            task, _, _, files, usable = self._call
            self._call = (task, (), {}, files, usable)

    def outcome(self) -> tuple[StepRun, float]:
        """Wait for the step; return its outcome and its wall seconds from submission to end.

        Returns:
            The outcome (as :func:`run_step`'s) and the seconds it took.
        """
        task, args, kwargs, files, usable = self._call
        self.future.wait()
        state = self.future.state
        # When the task finished (its final state's time), not when the flow came to wait.
        finished = state.timestamp.timestamp() if state.timestamp is not None else time.time()
        seconds = max(0.0, min(finished, time.time()) - self.submitted)
        return _settle(state, task, args, kwargs, files, usable), seconds


def link_tree(source: Path, target: Path) -> None:
    """Hard-link a file, or every file under a folder, to another place (copy if it cannot).

    Args:
        source: A file or folder.
        target: Where it goes (replaced if it exists; its parent is created).
    """
    source, target = Path(source), Path(target)
    if source.resolve() == target.resolve():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another file system, or no hard links: a plain copy
            shutil.copy2(src, dst)

    if source.is_dir():
        shutil.copytree(source, target, copy_function=link)
    else:
        link(str(source), str(target))
