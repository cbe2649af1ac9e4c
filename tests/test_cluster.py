"""The search, SHAP and horizon units on a Dask cluster: the same choices as in one process.

A ``LocalCluster`` of two worker processes stands for a real cluster: each unit goes to a
worker as a Prefect task run on ``DaskTaskRunner`` (flows/cluster.py), pickled there and
back, and the results must be those of the run without a cluster, for the same seed.
"""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys

import numpy as np
import pytest

from flows.cli import build_parser
from flows.cli_args import scheduler_address
from flows.cluster import Cluster, DaskRunner, resolve_cluster
from tabular import horizon
from tabular.config import load_config
from tabular.datasets import load_raw, prepare, split_data
from tabular.errors import ConfigError, UserError
from tabular.explain import explain_and_select, explain_sample, sample_rows_for_shap
from tabular.features import plan_encoding
from tabular.training import fit_final, score, train_models
from tests.conftest import free_port, make_toy_frame, write_toy_dataset

pytestmark = pytest.mark.slow

#: Small grids (two configurations a family, one stopped by successive halving after two
#: folds): a quick search that still reads XGBoost's smaller tree counts from its larger fits
#: and draws every curve.
MODELS = {
    "logistic": {"grid": {"C": [0.1, 1.0], "l1_ratio": [0.0]}, "curve_param": "C"},
    "xgboost": {
        "grid": {"max_depth": [2, 3], "n_estimators": [20, 40], "learning_rate": [0.1]},
        "curve_param": "n_estimators",
    },
    "mlp": {"grid": {"hidden_layer_sizes": [[8]], "alpha": [0.0001, 0.01]}, "curve_param": "alpha"},
}
FAST = {"n_iter": 2, "search_rows": 400, "max_epochs": 5, "patience": 2, "models": MODELS}
EXPLAIN = {"tree_rows": 50, "sample_rows": 20, "background_rows": 10}
#: Three rolling-origin folds on the toy orders: successive halving has work to cut.
TIME_SPLIT = {
    "method": "time",
    "folds": ["2021-05-01", "2021-06-01", "2021-07-01"],
    "test_start": "2021-08-01",
}
SEED = 3


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    path = write_toy_dataset(
        tmp_path_factory.mktemp("toy"),
        make_toy_frame(rows=1000),
        training=FAST,
        explain=EXPLAIN,
        split=TIME_SPLIT,
    )
    config = load_config(path)
    data, _ = prepare(load_raw(config), config)
    split = split_data(data, config, seed=SEED)
    return config, split, plan_encoding(split.train, config)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two worker processes of one thread each, shut down after the module."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        local_directory=str(tmp_path_factory.mktemp("dask")),
    ) as running:
        yield running


@pytest.fixture(scope="module")
def local(toy):
    config, split, plan = toy
    return train_models(split.train, split.folds, config, plan, SEED, log=lambda _: None)


class Counting(DaskRunner):
    """The cluster's runner, counting the units it submits."""

    def __init__(self, cluster: Cluster):
        super().__init__(cluster)
        self.units: list[str] = []

    def run(self, calls):
        self.units += [fn.__name__ for fn, _ in calls]
        return super().run(calls)


def test_the_search_makes_the_same_choices_on_a_cluster(prefect_harness, toy, cluster, local):
    config, split, plan = toy
    with Counting(Cluster(cluster.scheduler_address)) as runner:
        remote = train_models(
            split.train, split.folds, config, plan, SEED, log=lambda _: None, runner=runner
        )
        # A SHAP run on a worker too (the tree explainer: the permutation explainer's
        # numba compilation would cost each worker process about 6 s).
        background = sample_rows_for_shap(split.train, config.explain.background_rows, SEED)
        call = (
            explain_sample,
            (local.families["xgboost"], plan, split.validation, 50, background, SEED),
        )
        (shap_remote,) = runner.run([call])
    # Every (configuration, fold) fit went to the workers, as Prefect task runs ...
    assert set(runner.units) == {"fit_unit", "explain_sample"}
    assert runner.units.count("fit_unit") >= sum(len(f.trials) for f in remote.families.values())
    # ... and the search chose what the run without a cluster chose, with the same scores.
    assert remote.best_family == local.best_family
    assert remote.ranking == local.ranking
    for key, family in local.families.items():
        other = remote.families[key]
        assert other.best_params == family.best_params, key
        assert [(t.params, t.stopped) for t in other.trials] == [
            (t.params, t.stopped) for t in family.trials
        ], key
        assert [t.fold_validation for t in other.trials] == [
            t.fold_validation for t in family.trials
        ], key
        assert [t.fold_train for t in other.trials] == [t.fold_train for t in family.trials], key
        assert other.folds.validation_scores == family.folds.validation_scores, key
        assert other.validation_curve == family.validation_curve, key
        assert other.threshold == family.threshold, key
        assert other.calibration.applied == family.calibration.applied, key
    fn, args = call
    np.testing.assert_array_equal(
        shap_remote.values.to_numpy(), explain_sample(*args).values.to_numpy()
    )


def test_the_shap_stage_gives_a_runner_its_units_and_selects_the_same_columns(toy, local):
    config, split, plan = toy

    class InProcess:
        scheduler, xgboost_rows = None, None

        def __init__(self):
            self.batches = []

        def run(self, calls):
            self.batches.append([fn.__name__ for fn, _ in calls])
            return [pickle.loads(pickle.dumps(fn(*args))) for fn, args in calls]

    runner = InProcess()
    alone = explain_and_select(local, split, config, plan, SEED)
    spread = explain_and_select(local, split, config, plan, SEED, runner=runner)
    # The champion's SHAP run decides the selection; then both refits and the other SHAP run
    # go together.
    assert runner.batches == [
        ["explain_sample"],
        ["retrain_selected", "retrain_selected", "explain_sample"],
    ]
    assert spread.served == alone.served
    assert spread.selection.columns == alone.selection.columns
    for key in alone.served:
        np.testing.assert_array_equal(
            spread.shap[key].values.to_numpy(), alone.shap[key].values.to_numpy()
        )
        assert (
            spread.comparisons[key].selected.threshold == alone.comparisons[key].selected.threshold
        )


def test_xgboost_refits_through_xgboost_dask_above_the_configured_rows(
    prefect_harness, toy, cluster, local
):
    config, split, plan = toy
    family = local.families["xgboost"]
    small = Cluster(cluster.scheduler_address, xgboost_rows=len(split.train) - 1)
    with DaskRunner(small) as runner:
        final = fit_final(
            "xgboost", family.best_params, plan, split.train, config, SEED, family.folds, runner
        )
    assert final.on_cluster
    # A plain XGBoost classifier in the pipeline: served without a cluster, pickled as usual.
    restored = pickle.loads(pickle.dumps(final.pipeline))
    proba = restored.predict_proba(split.test)[:, 1]
    assert proba.shape == (len(split.test),) and ((proba >= 0) & (proba <= 1)).all()
    y = split.test[config.target.name].to_numpy()
    local_score = score("roc_auc", y, family.pipeline.predict_proba(split.test)[:, 1])
    assert abs(score("roc_auc", y, proba) - local_score) < 0.05
    # At or under the limit the refit stays in this process.
    with DaskRunner(Cluster(cluster.scheduler_address, len(split.train))) as runner:
        kept = fit_final(
            "xgboost", family.best_params, plan, split.train, config, SEED, family.folds, runner
        )
    assert not kept.on_cluster


def test_the_horizon_study_submits_every_refit_at_once(toy, local, monkeypatch):
    config, split, plan = toy
    config = config.model_copy(
        update={
            "training": config.training.model_copy(
                update={
                    "horizon_study": config.training.horizon_study.model_copy(
                        update={"horizons": [0.0, 2.0, 6.0], "rows": None}
                    )
                }
            )
        }
    )
    monkeypatch.setattr(horizon, "recomputes_horizon", lambda _: True)

    def refit(hours, raw, config_, study, sample, seed):
        return horizon.HorizonPoint(hours, [hours], hours, hours / 10, 3, 0.0)

    monkeypatch.setattr(horizon, "_refit_at", refit)

    class InProcess:
        scheduler, xgboost_rows = None, None

        def __init__(self):
            self.batches = []

        def run(self, calls):
            self.batches.append([args[0] for _, args in calls])
            return [fn(*args) for fn, args in calls]

    runner = InProcess()
    scores = {key: 0.5 for key in local.families}
    alone = horizon.horizon_study(split.train, config, local, scores, None, SEED, lambda _: None)
    spread = horizon.horizon_study(
        split.train, config, local, scores, None, SEED, lambda _: None, runner=runner
    )
    # The default horizon (0 h here) reuses the main run; the others go in one batch.
    assert runner.batches == [[2.0, 6.0]]
    assert [p.hours for p in spread.points] == [p.hours for p in alone.points] == [0.0, 2.0, 6.0]
    assert [p.test_score for p in spread.points] == [p.test_score for p in alone.points]


def test_an_unreachable_scheduler_is_one_readable_error(monkeypatch):
    monkeypatch.setattr("flows.cluster.CONNECT_SECONDS", 2)
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(UserError, match=f"cannot reach the Dask scheduler at {address}"):
        with DaskRunner(Cluster(address)):
            pass


def test_the_address_comes_from_the_option_then_the_config(tmp_path):
    args = build_parser().parse_args(["run", "--dask", "tcp://scheduler:8786"])
    assert args.dask == "tcp://scheduler:8786"
    assert build_parser().parse_args(["run"]).dask is None
    with pytest.raises(argparse.ArgumentTypeError, match="tcp://scheduler:8786"):
        scheduler_address("scheduler:8786")
    plain = load_config(write_toy_dataset(tmp_path / "plain"))
    assert resolve_cluster(None, plain) is None
    configured = load_config(
        write_toy_dataset(
            tmp_path / "configured",
            execution={"dask": "tcp://cluster:8786", "xgboost_dask_rows": 500},
        )
    )
    assert resolve_cluster(None, configured) == Cluster("tcp://cluster:8786", 500)
    assert resolve_cluster("tcp://other:8786", configured).address == "tcp://other:8786"
    with pytest.raises(ConfigError, match="execution"):
        load_config(write_toy_dataset(tmp_path / "bad", execution={"dask": "cluster"}))


def test_dask_is_not_imported_unless_asked_for():
    code = (
        "import sys, flows.cli, flows.cluster, flows.training, flows.explain, tabular.training, "
        "tabular.explain, tabular.horizon\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('dask', 'distributed', 'prefect_dask')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]", done.stdout
