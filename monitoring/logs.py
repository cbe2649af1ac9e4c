"""The prediction logs as the monitor reads them: one frame of logs and their true outcomes.

The store keeps logs and feedback apart (:mod:`store.crud`); the monitor needs them side by
side to score the served model on the requests whose outcome came back.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from store.crud import feedback_for, prediction_logs_frame


def labelled_predictions_frame(**filters: Any) -> pd.DataFrame:
    """Load prediction logs with their true outcome, for performance monitoring.

    Args:
        **filters: Same filters as :func:`store.crud.prediction_logs_frame`.

    Returns:
        The frame of :func:`store.crud.prediction_logs_frame` plus ``actual`` (nullable
        0/1, missing while no feedback was posted) and ``feedback_at``.

    Raises:
        InvalidRecord: If a filter has the wrong type.
        StoreUnavailable: If MongoDB is unreachable.
    """
    logs = prediction_logs_frame(**filters)
    ids = logs["request_id"].tolist()
    found = feedback_for(ids)
    logs["actual"] = pd.array([found.get(i, {}).get("actual") for i in ids], dtype="Int64")
    logs["feedback_at"] = pd.to_datetime([found.get(i, {}).get("received_at") for i in ids])
    return logs
