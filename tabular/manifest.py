"""The run manifest: what a pipeline run used and produced, written as ``manifest.json``."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import secrets
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

#: Packages whose versions every manifest records (a built-in loader's own package is added
#: for the runs that use it: :func:`package_versions`).
TRACKED_PACKAGES = (
    "pandas",
    "numpy",
    "scikit-learn",
    "xgboost",
    "shap",
    "prefect",
    "bentoml",
    "evidently",
    "great-expectations",
    "mongoengine",
)


def new_run_id(now: dt.datetime | None = None) -> str:
    """Return a sortable, unique run id such as ``20261122-031500-3fa2c1``.

    Args:
        now: The time to stamp (UTC now by default).

    Returns:
        The run id.
    """
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    """Return the installed version of each package (``"missing"`` when absent).

    Args:
        names: Distribution names (add the loader's package for a run of a built-in
            dataset: ``(*TRACKED_PACKAGES, get_loader(name).package)``).

    Returns:
        Mapping of name to version, plus ``python``.
    """
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


@dataclass
class RunManifest:
    """Everything needed to tell what a run did and to reproduce it.

    Attributes:
        run_id: The run's id (also its folder name).
        dataset: The dataset config's name.
        config_path: Path of the config file.
        config: The config's content.
        seed: Random seed used everywhere.
        sample: Rows sampled, or ``None`` for the full data.
        status: ``running``, ``succeeded`` or ``failed: <reason>``.
        started_at: ISO time the run started (UTC).
        data_hash: SHA-256 of the prepared rows the run used.
        rows: Row counts (loaded, dropped per reason, kept, per split part).
        columns: Column counts and roles of the prepared data.
        split: Description of the split.
        steps: Wall time of each step, in seconds.
        steps_cpu: CPU time of each step run in the flow's own thread, in seconds (this
            process's threads and the processes it waited for, including the steps running
            alongside at the time): on a shared machine it moves less than the wall time.
        seconds: Wall time of the whole run, in seconds.
        cpu_seconds: CPU time of the whole run (every thread), in seconds.
        concurrent: Steps that ran alongside the others (their ``steps`` entry is their own
            wall time, from start to end, overlapping the others').
        cached: Steps whose results were read back from an earlier run with the same inputs
            and code (their files are linked into this run's folder) instead of computed.
        outputs: Paths of files the run wrote, relative to the run folder.
        models: Per family: verdict with its numbers (``train_rows_<metric>``: each fold's
            model on the rows it was fitted on, ``mean_fold_<metric>``: on the rows each
            fold is scored on, both averaged over the folds), fold scores, test score and
            its difference to the mean fold, best hyperparameters, threshold, calibration,
            the final model's scores on the development rows it was refitted on (all, or
            ``final_rows`` of them) and on the pooled fold predictions; ``best``: the
            champion.
        selection: The selection rule and what the fold scores predicted about the test rows
            (the champion, the best family on test, the shortfall).
        selected_features: Columns kept by the SHAP selection.
        served_models: BentoML model-store tags of the two served models.
        bento: Tag of the Bento built to serve them (``make serve`` serves the latest);
            ``None`` when the run was asked not to build one (a challenger).
        reference: The monitoring reference: ``path`` (relative to the run folder), ``sha256``
            and ``rows``.
        until: Only rows dated before this were used (a retraining run), else ``None``.
        overrides: Config keys replaced for this run (a retraining run), else empty.
        database: The run's rows stored in MongoDB and the ``mlops db query`` that proves it:
            ``ok``, ``store``, ``rows``, ``inserted``, ``command``, ``reused`` (an earlier
            run stored the same rows in the same store: its proof is reused).
        packages: Versions of the main packages.
    """

    run_id: str
    dataset: str
    config_path: str
    config: dict
    seed: int
    sample: int | None
    status: str = "running"
    started_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    data_hash: str | None = None
    rows: dict = field(default_factory=dict)
    columns: dict = field(default_factory=dict)
    split: str | None = None
    steps: dict[str, float] = field(default_factory=dict)
    steps_cpu: dict[str, float] = field(default_factory=dict)
    concurrent: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    cached: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    selection: dict = field(default_factory=dict)
    selected_features: list[str] = field(default_factory=list)
    served_models: list[str] = field(default_factory=list)
    bento: str | None = None
    reference: dict = field(default_factory=dict)
    until: str | None = None
    overrides: dict = field(default_factory=dict)
    database: dict = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=package_versions)

    @contextmanager
    def step(self, name: str):
        """Time a step and record its wall time, even when it fails.

        Args:
            name: Step name, e.g. ``"validate"``.

        Yields:
            Nothing.
        """
        start, cpu = time.perf_counter(), sum(os.times()[:4])
        try:
            yield
        finally:
            self.steps[name] = round(time.perf_counter() - start, 3)
            self.steps_cpu[name] = round(sum(os.times()[:4]) - cpu, 3)

    def write(self, run_dir: Path) -> Path:
        """Write ``manifest.json`` into the run folder.

        Args:
            run_dir: The run's folder.

        Returns:
            The path written.
        """
        path = Path(run_dir) / "manifest.json"
        path.write_text(json.dumps(asdict(self), indent=2, default=str) + "\n", encoding="utf-8")
        return path


def describe_columns(data, config) -> dict:
    """Summarise the prepared data's columns and their roles for the manifest.

    Args:
        data: The prepared frame.
        config: The dataset config.

    Returns:
        Counts and names of all, datetime, categorical, numeric and leakage columns.
    """
    import pandas as pd

    datetime_columns = [c for c in data.columns if pd.api.types.is_datetime64_any_dtype(data[c])]
    return {
        "count": int(data.shape[1]),
        "names": [str(c) for c in data.columns],
        "datetime": datetime_columns,
        "categorical": list(config.categorical),
        "numeric": list(config.numeric_features),
        "features": len(config.feature_columns),
        "leakage_excluded": list(config.leakage),
        "target": config.target.name,
    }
