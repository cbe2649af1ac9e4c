"""Shared test set-up: isolated Prefect/BentoML homes, a Prefect test harness, toy datasets."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

# Set before anything imports prefect or bentoml: their homes must not leak across runs.
_HOME = Path(tempfile.mkdtemp(prefix="mlops-tests-"))
os.environ["PREFECT_HOME"] = str(_HOME / "prefect")
os.environ["BENTOML_HOME"] = str(_HOME / "bentoml")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("MPLBACKEND", "Agg")
# As the Makefile does, before a test module imports scikit-learn or XGBoost (whose OpenMP
# runtime reads it once): spinning threads made a toy training 8x slower on a busy machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.pop("PREFECT_API_URL", None)


# -- MongoDB: a database per test, and the tests that need a real server ---------------------

#: Names the one database the tests may use, when the account of ``MONGODB_URI`` may use no
#: other: CI's mongodb job connects as the application's own user, made by
#: docker/mongo-init.js as in compose (readWrite on its database only), so it can neither
#: create a database per test nor drop one. The tests then share that database, emptied
#: (collection by collection) before and after each. It is emptied: never name one whose data
#: you want to keep.
SHARED_DATABASE_ENV = "MLOPS_TEST_DATABASE"


def shared_test_database() -> str | None:
    """The database every test shares (``MLOPS_TEST_DATABASE``, with ``MONGODB_URI``), if any."""
    if not os.environ.get("MONGODB_URI", "").strip():
        return None
    return os.environ.get(SHARED_DATABASE_ENV, "").strip() or None


def fresh_database(prefix: str = "mlops_test") -> str:
    """Name a database for one test (or one module): a new one, or the shared one, emptied."""
    shared = shared_test_database()
    if shared is None:
        return f"{prefix}_{uuid.uuid4().hex[:12]}"
    import pymongo

    with pymongo.MongoClient(os.environ["MONGODB_URI"], serverSelectionTimeoutMS=10_000) as client:
        drop_test_database(client.get_database(shared))
    return shared


def drop_test_database(database) -> None:
    """Drop a test's database (pymongo's or the embedded store's), or empty the shared one."""
    if database.name == shared_test_database():
        for name in database.list_collection_names():
            database.drop_collection(name)
    else:
        database.client.drop_database(database.name)


def pytest_collection_modifyitems(config, items):
    """Run the fuzz test last; skip the ``mongodb`` tests when MONGODB_URI is unset.

    The fuzz test stores random records and logs in the server it shares with the service
    tests. The ``mongodb`` tests need a real server.
    """
    items.sort(key=lambda item: item.get_closest_marker("fuzz") is not None)  # stable
    if os.environ.get("MONGODB_URI", "").strip():
        return
    skip = pytest.mark.skip(
        reason="needs a MongoDB server: set MONGODB_URI (CI's mongodb job does; none can be "
        "installed on the machines this project is built on)"
    )
    for item in items:
        if "mongodb" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def prefect_harness():
    """A Prefect test server shared by the whole session (about 9 s to start once)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def make_toy_frame(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """Build a small dataset of another shape than flights: daily shop orders.

    The target ``returned`` depends on ``price`` and ``channel`` so models can learn it.
    """
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2021-01-01", periods=rows, freq="6h")
    channel = rng.choice(["web", "store", "phone", "partner"], size=rows, p=[0.5, 0.3, 0.18, 0.02])
    region = rng.choice([f"r{i}" for i in range(50)], size=rows)
    price = rng.gamma(2.0, 30.0, size=rows).round(2)
    quantity = rng.integers(1, 6, size=rows)
    score = 0.02 * price + (channel == "web") * 1.0 - 2.5 + rng.normal(0, 1, size=rows)
    return pd.DataFrame(
        {
            "order_date": dates.strftime("%Y-%m-%d %H:%M"),
            "channel": channel,
            "region": region,
            "price": price,
            "quantity": quantity,
            "order_id": np.arange(rows),
            "returned": (score > 0).astype(int),
        }
    )


def toy_config_dict(**overrides) -> dict:
    """The toy orders dataset config as a plain dict, with top-level keys overridden."""
    config = {
        "name": "orders",
        "question": "Will this order be returned?",
        "source": {"csv": "orders.csv"},
        "target": {"name": "returned", "column": "returned", "labels": ["kept", "returned"]},
        "date_column": "order_date",
        "categorical": ["channel", "region"],
        "numeric": ["price", "quantity"],
        "id_columns": ["order_id"],
        "checks": {"ranges": {"price": [0, 10000], "quantity": [1, 100]}},
        "split": {"method": "random", "validation_size": 0.2, "test_size": 0.2},
        "features": {"one_hot_max_levels": 10},
        "seed": 7,
    }
    config.update(overrides)
    return config


def write_dataset(folder: Path, frame: pd.DataFrame, config: dict) -> Path:
    """Write ``frame`` as the config's CSV source and the config next to it; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / config["source"]["csv"], index=False)
    path = folder / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def write_toy_dataset(folder: Path, frame: pd.DataFrame | None = None, **overrides) -> Path:
    """Write a toy CSV and its dataset config into ``folder``; return the config path."""
    frame = make_toy_frame() if frame is None else frame
    return write_dataset(folder, frame, toy_config_dict(**overrides))


@pytest.fixture
def toy_config(tmp_path: Path) -> Path:
    """Path of a toy dataset config (CSV of 600 orders) in a temp folder."""
    return write_toy_dataset(tmp_path / "orders")


MONTH_NAMES = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip


def make_bookings_frame(rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Build hotel bookings unlike flights: 24 columns, a yes/no target, text missing markers.

    The date is spread over year / month-name / day columns; ``agent`` writes its gaps as
    ``NULL`` and ``children`` as ``NA``, ``meal`` has an ``Undefined`` level. Cancellation
    depends on lead time, deposit, past cancellations, segment and the arrival month.
    """
    rng = np.random.default_rng(seed)
    arrival = pd.Timestamp("2016-01-01") + pd.to_timedelta(
        np.sort(rng.integers(0, 730, size=rows)), unit="D"
    )
    lead_time = rng.gamma(1.5, 60.0, size=rows).round()
    deposit = rng.choice(["No Deposit", "Non Refund", "Refundable"], size=rows, p=[0.8, 0.17, 0.03])
    segment = rng.choice(
        ["Online TA", "Offline TA/TO", "Groups", "Direct", "Corporate", "Aviation"],
        size=rows,
        p=[0.47, 0.2, 0.17, 0.1, 0.05, 0.01],
    )
    previous = rng.poisson(0.1, size=rows)
    summer = np.isin(arrival.month, [6, 7, 8])
    score = (
        0.012 * lead_time
        + 2.5 * (deposit == "Non Refund")
        + 1.0 * previous
        + 0.6 * (segment == "Groups")
        + 0.5 * summer
        - 2.2
        + rng.normal(0, 0.8, size=rows)
    )
    agent = rng.choice([9.0, 240.0, 1.0, 14.0, 7.0], size=rows).astype(object)
    agent[rng.random(rows) < 0.12] = "NULL"
    children = rng.choice([0, 0, 0, 1, 2], size=rows).astype(object)
    children[rng.random(rows) < 0.02] = "NA"
    countries = [f"C{i:02d}" for i in range(60)]
    weights = 1 / np.arange(1, 61)
    return pd.DataFrame(
        {
            "hotel": rng.choice(["City Hotel", "Resort Hotel"], size=rows, p=[0.66, 0.34]),
            "is_canceled": np.where(score > 0, "yes", "no"),
            "lead_time": lead_time,
            "arrival_date_year": arrival.year,
            "arrival_date_month": [MONTH_NAMES[m - 1] for m in arrival.month],
            "arrival_date_day_of_month": arrival.day,
            "stays_in_weekend_nights": rng.poisson(0.9, size=rows),
            "stays_in_week_nights": rng.poisson(2.5, size=rows),
            "adults": rng.choice([1, 2, 2, 2, 3], size=rows),
            "children": children,
            "meal": rng.choice(
                ["BB", "HB", "SC", "FB", "Undefined"], size=rows, p=[0.7, 0.12, 0.1, 0.06, 0.02]
            ),
            "country": rng.choice(countries, size=rows, p=weights / weights.sum()),
            "market_segment": segment,
            "distribution_channel": rng.choice(["TA/TO", "Direct", "Corporate"], size=rows),
            "is_repeated_guest": rng.choice([0, 1], size=rows, p=[0.97, 0.03]),
            "previous_cancellations": previous,
            "booking_changes": rng.poisson(0.2, size=rows),
            "deposit_type": deposit,
            "agent": agent,
            "customer_type": rng.choice(["Transient", "Contract", "Group"], size=rows),
            "adr": rng.gamma(4.0, 25.0, size=rows).round(2),
            "required_car_parking_spaces": rng.choice([0, 1], size=rows, p=[0.92, 0.08]),
            "total_of_special_requests": rng.poisson(0.6, size=rows),
            "booking_id": np.arange(rows),
        }
    )


def bookings_config_dict(**overrides) -> dict:
    """A config for :func:`make_bookings_frame` without a date column, top-level keys overridden."""
    config = {
        "name": "bookings",
        "question": "Will this booking be canceled?",
        "row_noun": "booking",
        "source": {"csv": "bookings.csv"},
        "target": {
            "name": "canceled",
            "column": "is_canceled",
            "positive_values": ["yes"],
            "labels": ["kept", "canceled"],
        },
        "categorical": [
            "hotel", "meal", "country", "market_segment", "distribution_channel",
            "deposit_type", "customer_type",
        ],
        "numeric": [
            "lead_time", "stays_in_weekend_nights", "stays_in_week_nights", "adults",
            "children", "is_repeated_guest", "previous_cancellations", "booking_changes",
            "agent", "adr", "required_car_parking_spaces", "total_of_special_requests",
        ],
        "id_columns": ["booking_id"],
        "missing_markers": ["", "NA", "NULL", "Undefined"],
        "checks": {"null_share": {"agent": 0.2}, "ranges": {"adr": [0, 5000]}},
        "split": {"method": "random", "validation_size": 0.2, "test_size": 0.2},
        "seed": 3,
    }  # fmt: skip
    config.update(overrides)
    return config


def write_bookings_dataset(folder: Path, frame: pd.DataFrame | None = None, **overrides) -> Path:
    """Write a bookings CSV and its dataset config into ``folder``; return the config path."""
    frame = make_bookings_frame() if frame is None else frame
    return write_dataset(folder, frame, bookings_config_dict(**overrides))


def save_served_pair(
    config,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    columns: list[str],
    models: dict,
    *,
    reference_dir: Path,
    run_id: str = "run-test",
    seed: int = 3,
) -> tuple[dict[str, str], dict]:
    """Fit a primary and a secondary model on ``columns`` and save them as a run would.

    Each is fitted on ``train`` and scored on ``validation`` (threshold, calibration), then
    refitted on both. The monitoring reference (those rows, both probabilities, target) is saved to
    ``reference_dir`` first and named in both models' metadata, as the pipeline does.

    Args:
        models: ``{role: (family, params)}`` for ``primary`` and ``secondary``.

    Returns:
        The saved tags and the fitted pipelines, by role.
    """
    from bentos.registry import model_name, save_served_model
    from monitoring.reference import REFERENCE_FILE, build_reference, save_reference
    from tabular.contract import build_contract
    from tabular.datasets import Fold, Split
    from tabular.features import plan_encoding
    from tabular.training import fit_on_split

    # One fold: fit on ``train``, score on ``validation``; the final fit takes both.
    development = pd.concat([train, validation], ignore_index=True)
    positions = np.arange(len(development))
    fold = Fold(
        name="validation",
        train=positions[: len(train)],
        validation=positions[len(train) :],
        description="the given training rows, then the given validation rows",
    )
    split = Split(train=development, test=development.iloc[:0], folds=[fold], description="")
    plan = plan_encoding(train, config).restrict(columns)
    fitted = {
        role: fit_on_split(family, params, plan, split, config, seed)
        for role, (family, params) in models.items()
    }
    pipelines = {role: model.pipeline for role, model in fitted.items()}
    frame = build_reference(
        development, plan.input_columns, config.target.name, pipelines, max_rows=100_000, seed=seed
    )
    reference = save_reference(frame, reference_dir / REFERENCE_FILE)
    tags = {}
    for role, model in fitted.items():
        family, params = models[role]
        saved = save_served_model(
            model_name(config.name, role),
            model.pipeline,
            family=family,
            label=family,
            role=role,
            contract=build_contract(config, development, model.pipeline, plan.input_columns),
            threshold=model.threshold,
            metrics={"validation": model.metrics["validation"]},
            config=config,
            run_id=run_id,
            data_hash="hash-test",
            params=params,
            reference=reference.metadata(),
        )
        tags[role] = str(saved.tag)
    return tags, pipelines


# -- BentoML servers (tests/test_service.py, tests/test_monitor_e2e.py) ---------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def post(self, route: str, body=None, *, key: str | None = None, raw: bytes | None = None,
             content_type: str = "application/json") -> httpx.Response:  # fmt: skip
        headers = {"Content-Type": content_type}
        if key is not None:
            headers["X-API-Key"] = key
        content = raw if raw is not None else json.dumps(body).encode()
        return httpx.post(self.url + route, content=content, headers=headers, timeout=30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(bento: str, folder: Path, **env: str) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    environment = {**os.environ, **env}
    environment.setdefault("MLOPS_STORE_DIR", str(folder / "store"))
    environment.setdefault("MLOPS_JOURNAL_PATH", str(folder / "journal.jsonl"))
    for name in ("MLOPS_API_KEY",):
        if name not in env:
            environment.pop(name, None)
    log = folder / f"server-{port}.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                bento,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],  # fmt: skip
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,  # its workers share its process group: stopped together
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return Server(url, process, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(Server(url, process, log))
    raise RuntimeError(f"server not ready in 120 s:\n{log.read_text()[-3000:]}")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(10)


# -- two served flights models, shared by the tests that serve them -------------------------------

#: The served models' inputs (a subset of the flights features: quick to train).
SERVICE_COLUMNS = [
    "sched_dep", "carrier", "origin", "dest", "route", "manufacturer", "distance",
    "sched_arr_hour", "origin_day_departures", "temp", "wind_gust", "pressure", "plane_age",
]  # fmt: skip
SERVICE_PARAMS = {
    "mlp": {"hidden_layer_sizes": [16], "alpha": 0.001, "learning_rate_init": 0.003},
    "xgboost": {"max_depth": 3, "n_estimators": 40, "learning_rate": 0.1},
}


@dataclass
class Served:
    config: object
    split: object
    bento: str
    tags: dict[str, str]
    pipelines: dict[str, object]
    contract: object
    store_root: Path


@pytest.fixture(scope="session")
def served(tmp_path_factory) -> Served:
    """Two flights models trained on a sample, saved as a run saves them, built into a Bento.

    Session-wide: tests/test_service.py and tests/test_fuzz.py serve the same Bento (each
    module starts its own server, on its own store).
    """
    from bentos.build import build_bento
    from bentos.registry import served_model_from_tag
    from tabular.config import DEFAULT_CONFIG, load_config
    from tabular.datasets import load_raw, prepare, split_data

    root = tmp_path_factory.mktemp("service")
    config = load_config(DEFAULT_CONFIG)
    config = config.model_copy(
        update={"training": config.training.model_copy(update={"max_epochs": 3, "patience": 2})}
    )
    data, _ = prepare(load_raw(config), config)
    sample = data.sample(8000, random_state=3).sort_values(config.date_column)
    split = split_data(sample, config, seed=3)
    tags, pipelines = save_served_pair(
        config,
        split.train,
        split.validation,
        SERVICE_COLUMNS,
        {
            "primary": ("mlp", SERVICE_PARAMS["mlp"]),
            "secondary": ("xgboost", SERVICE_PARAMS["xgboost"]),
        },
        reference_dir=root / "run",
    )
    bento = build_bento(config.name, tags["primary"], tags["secondary"])
    return Served(
        config=config,
        split=split,
        bento=bento,
        tags=tags,
        pipelines=pipelines,
        contract=served_model_from_tag(tags["primary"]).contract,
        store_root=root,
    )


#: The write key of the session's flights server.
SERVICE_KEY = "test-key-0123"


@pytest.fixture(scope="session")
def service_store(served, tmp_path_factory) -> dict[str, str]:
    """The session's flights store: 200 test flights (embedded, or MONGODB_URI's server)."""
    with flights_store(served, tmp_path_factory.mktemp("service-store")) as env:
        yield env


@pytest.fixture(scope="session")
def service_server(served, service_store, tmp_path_factory) -> Server:
    """The Bento served on a free port with ``SERVICE_KEY``: tests/test_service.py, then the fuzzer."""
    running = start_server(
        served.bento, tmp_path_factory.mktemp("service-server"), MLOPS_API_KEY=SERVICE_KEY,
        **service_store,
    )  # fmt: skip
    yield running
    stop_server(running)


@contextmanager
def flights_store(served: Served, folder: Path, rows: int = 200):
    """A fresh database (embedded in ``folder``, or MONGODB_URI's server) holding test flights.

    Yields:
        The environment a server needs to use it.
    """
    from store import StoreSettings, connect
    from store.connection import get_database
    from store.transfer import import_dataset

    env = {"MONGODB_DB": fresh_database(), "MLOPS_STORE_DIR": str(folder)}
    if os.environ.get("MONGODB_URI"):
        env["MONGODB_URI"] = os.environ["MONGODB_URI"]
    connect(StoreSettings.from_env(env))
    import_dataset(served.config, frame=served.split.test.head(rows))
    try:
        yield env
    finally:
        connect(StoreSettings.from_env(env), check=False)
        drop_test_database(get_database())
