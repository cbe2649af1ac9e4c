"""How many rows SHAP needs: the importance ranking and the selection against the rows explained.

Loads the two served families' full-feature pipelines from a run folder
(``training/models/*.joblib``), explains them on growing fixed-seed samples of the last
validation period's rows (as the pipeline does), and prints for each sample size: the time,
the top columns, the Spearman correlation of the mean |SHAP| per column with the largest
sample's, and the columns the selection rule keeps (the champion's decide it). Fewer rows
are safe where the kept columns do not change.

    .venv/bin/python benchmarks/shap_rows.py artifacts/runs/<run-id>
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import joblib
import numpy as np
from scipy.stats import spearmanr

from tabular.config import load_config
from tabular.datasets import load_raw, prepare, sample_rows, split_data
from tabular.explain import explain, sample_rows_for_shap, select_features
from tabular.features import plan_encoding
from tabular.training import FAMILY_LABELS, one_blas_thread

SIZES = {"xgboost": [250, 500, 1000, 2000, 4000], "mlp": [75, 150, 300, 600]}


def main() -> None:
    """Run the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    manifest = json.loads((args.run_dir / "manifest.json").read_text())
    config = load_config(manifest["config_path"])
    seed = manifest["seed"]
    data, _ = prepare(load_raw(config), config)
    data = sample_rows(data, manifest["sample"], seed, config.date_column)
    split = split_data(data, config, seed)
    plan = plan_encoding(split.train, config)
    background = sample_rows_for_shap(split.train, config.explain.background_rows, seed)
    champion = manifest["models"]["best"]
    served = [champion] + [k for k in ("xgboost", "mlp") if k != champion][:1]
    print(f"load average {os.getloadavg()}; champion {champion}")
    for key in served:
        family = SimpleNamespace(
            family=key,
            label=FAMILY_LABELS[key],
            pipeline=joblib.load(args.run_dir / "training" / "models" / f"{key}.joblib"),
        )
        results = {}
        for n in SIZES[key]:
            rows = sample_rows_for_shap(split.validation, n, seed)
            start = time.perf_counter()
            with one_blas_thread():
                results[n] = explain(family, plan, rows, background, seed)
            results[n].seconds = time.perf_counter() - start
        largest = results[max(results)].importance
        print(f"\n{family.label} ({results[max(results)].explainer})")
        for n, result in results.items():
            importance = result.importance
            rho = spearmanr(importance.reindex(largest.index), largest).statistic
            kept = select_features(result, config).columns
            print(
                f"  {n:>5} rows: {result.seconds:5.1f} s, Spearman {rho:.3f} with {max(results)} "
                f"rows, top 5 {list(importance.index[:5])}"
            )
            if key == champion:
                print(f"         keeps {len(kept)}: {sorted(kept)}")
        if key == champion:
            keeps = {n: sorted(select_features(r, config).columns) for n, r in results.items()}
            same = [n for n in keeps if keeps[n] == keeps[max(keeps)]]
            print(f"  the same columns kept as with {max(keeps)} rows: {same}")
    print(f"\nload average {os.getloadavg()}")
    np.seterr(all="ignore")


if __name__ == "__main__":
    main()
