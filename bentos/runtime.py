"""Load a served pipeline for prediction: compiled when possible, checked against itself.

The model services call :func:`load_predictor` once per process; the front calls them through
:func:`call_model`. The pipeline is compiled
(:mod:`bentos.compiled`) and the compiled replay is compared with the pipeline on rows
built from the input contract (every known level, an unseen level, the bounds, nulls where
allowed); if it is not compilable or differs by more than :data:`TOLERANCE`, the pipeline
itself serves, and the log says why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np

from bentos.registry import ServedModel
from tabular.contract import InputContract

logger = logging.getLogger("bentoml.service.runtime")  # shown by the server's log set-up

#: Largest difference allowed between the compiled replay and the pipeline.
TOLERANCE = 1e-9


@dataclass
class Predictor:
    """Probabilities of class 1 for rows of values in the contract's order.

    Attributes:
        pipeline: The fitted scikit-learn pipeline (the reference).
        contract: The model's input contract.
        compiled: The compiled replay, or ``None`` when the pipeline serves itself.
        check: Largest difference found by the start-up check (``None`` without replay).
    """

    pipeline: Any
    contract: InputContract
    compiled: Any = None
    check: float | None = None

    def predict_proba(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        """Return one probability per row.

        Args:
            rows: Values in the contract's order (see :meth:`InputContract.values`).

        Returns:
            The probabilities of class 1.
        """
        if self.compiled is not None:
            return self.compiled.predict_proba(rows)
        return self.reference(rows)

    def reference(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        """Return the pipeline's own probabilities (pandas and scikit-learn, slower).

        Args:
            rows: As for :meth:`predict_proba`.

        Returns:
            The probabilities of class 1.
        """
        if not rows:
            return np.empty(0, dtype=np.float64)
        return self.pipeline.predict_proba(self.contract.values_frame(rows))[:, 1]


def check_rows(contract: InputContract) -> list[list[Any]]:
    """Build rows that exercise every branch of a pipeline, from its contract.

    Starting from the contract's example row, each row changes one field: every known
    level and one unseen level of each category, the bounds of each number, and ``null``
    where allowed.

    Args:
        contract: The input contract.

    Returns:
        Rows of values in the contract's order.
    """
    base = contract.values(contract.check_row(contract.example))
    rows = [list(base)]
    for i, spec in enumerate(contract.fields):
        variants: list[Any] = []
        if spec.kind == "category":
            variants += [*spec.levels, "__never_seen__"]
        elif spec.kind == "number":
            variants += [v for v in (spec.minimum, spec.maximum) if v is not None]
            variants += [base[i] * 0.5 if base[i] else 1.0]
        else:
            variants += [base[i].replace(hour=(base[i].hour + 7) % 24, day=1)]
        if spec.nullable:
            variants.append(None)
        for value in variants:
            row = list(base)
            row[i] = value
            rows.append(row)
    return rows


def load_predictor(served: ServedModel, *, single_thread: bool = True) -> Predictor:
    """Load a served model's pipeline and prepare its fastest exact prediction path.

    Args:
        served: The served model (from :func:`bentos.registry.served_model`).
        single_thread: Limit BLAS/OpenMP and XGBoost to one thread. Each model runs in its
            own process; on a small machine extra threads only fight over the cores (an
            XGBoost call on one row took 40 ms with two threads under load, 1.4 ms with one).

    Returns:
        The predictor.
    """
    import bentoml

    from bentos.compiled import NotCompilable, compile_pipeline, max_difference

    if single_thread:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    pipeline = bentoml.sklearn.load_model(served.tag)
    model = pipeline.named_steps.get("model") if hasattr(pipeline, "named_steps") else None
    if single_thread and model is not None and "n_jobs" in model.get_params():
        model.set_params(n_jobs=1)  # threads do not change a prediction, only its speed
    predictor = Predictor(pipeline=pipeline, contract=served.contract)
    try:
        compiled = compile_pipeline(pipeline, served.contract.names)
    except NotCompilable as exc:
        logger.warning("%s: serving the pipeline itself (%s)", served.tag, exc)
        return predictor
    rows = check_rows(served.contract)
    difference = max_difference(compiled, pipeline, served.contract.values_frame(rows), rows)
    if difference > TOLERANCE:
        logger.warning(
            "%s: compiled replay differs by %.3g on the check rows; serving the pipeline itself",
            served.tag,
            difference,
        )
        return predictor
    predictor.compiled, predictor.check = compiled, difference
    logger.info("%s: compiled replay, max difference %.3g on %d rows", served.tag, difference,
                len(rows))  # fmt: skip
    return predictor


def incompatible(served: InputContract, new: InputContract) -> str | None:
    """Say why a model cannot take the served request schema's rows, or ``None`` if it can.

    The request schema is fixed when the service starts, so a reloaded model must take the
    same fields, in the same order and of the same kinds; a field the schema accepts as
    ``null`` must be one the new model learned to impute.

    Args:
        served: The contract the service's request schema was built from.
        new: The new model's contract.

    Returns:
        The reason, or ``None``.
    """
    if new.names != served.names:
        return (
            f"its inputs ({', '.join(new.names)}) differ from the served request schema "
            f"({', '.join(served.names)}); restart the service to serve it"
        )
    for old_spec, new_spec in zip(served.fields, new.fields, strict=True):
        if old_spec.kind != new_spec.kind:
            return f"'{new_spec.name}' is a {new_spec.kind} there, a {old_spec.kind} here; restart"
        if old_spec.nullable and not new_spec.nullable:
            return f"'{new_spec.name}' may be null in requests but the new model never saw a null"
    return None


async def call_model(method, rows: list[list[Any]]) -> list[float]:
    """Call a model service's ``predict_proba``, once more if the connection was dropped.

    BentoML's client keeps idle connections to a model process for 15 s, and the model's
    server closes them after 5 s: a request sent on one that is being closed fails with a
    broken pipe (BentoML issue #4971; seen as 5 answers of 500 in a 60-s soak at load 9).
    A prediction changes nothing, so it is sent again (the pool has dropped the broken connection).
    """
    try:
        return await method(rows)
    except aiohttp.ClientConnectionError as exc:
        logger.warning("a model service dropped the connection (%s); sending the rows again", exc)
        return await method(rows)
