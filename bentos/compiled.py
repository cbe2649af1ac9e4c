"""A fitted pipeline compiled to plain numpy: the same predictions without pandas overhead.

Calling a fitted scikit-learn pipeline on one row costs about 7 ms, almost all of it in the
``ColumnTransformer`` (a pandas frame per sub-pipeline, ``check_array``, column
selection), not in the model. :func:`compile_pipeline` reads the fitted pipeline's learned
state (imputer statistics, missing-value indicators, scaler means and scales, one-hot
categories and the rare levels grouped into "Other", target encodings, network weights) and replays the same arithmetic on
plain Python rows with numpy, in the same order, so the result equals the pipeline's to
floating-point rounding (the tests hold it to 1e-9 on thousands of rows).

Only the steps built by :func:`tabular.features.build_preprocessor` are compiled; anything
else raises :class:`NotCompilable`, and callers keep the pipeline itself. The estimator is
replayed for the multilayer perceptron and logistic regression; any other estimator (e.g.
XGBoost, whose own C++ predictor is already fast) is called on the compiled matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    StandardScaler,
    TargetEncoder,
)

from tabular.features import (
    MISSING,
    CalibratedModel,
    CategoryText,
    DateParts,
    as_float32,
)

Columns = list  # one list of values per input column
Step = Callable[[Any], Any]


class NotCompilable(Exception):
    """The pipeline holds a step (or an option) this module does not replay."""


_DATE_PARTS: dict[str, Callable[[Any], float]] = {
    "year": lambda d: float(d.year),
    "month": lambda d: float(d.month),
    "day": lambda d: float(d.day),
    "weekday": lambda d: float(d.weekday()),
    "hour": lambda d: float(d.hour),
    "dayofyear": lambda d: float(d.timetuple().tm_yday),
}


def _date_parts(step: DateParts) -> Step:
    try:
        getters = [_DATE_PARTS[part] for part in step.parts]
    except KeyError as exc:
        raise NotCompilable(f"date part {exc} is not replayed") from None
    nan = math.nan

    def run(columns: Columns) -> np.ndarray:
        (values,) = columns
        return np.array(
            [[nan] * len(getters) if v is None else [g(v) for g in getters] for v in values],
            dtype=np.float64,
        ).reshape(len(values), len(getters))

    return run


def _as_matrix(columns: Columns | np.ndarray) -> np.ndarray:
    if isinstance(columns, np.ndarray):
        return columns
    # None becomes NaN, as in the pipeline's float conversion of a missing value.
    return np.array(columns, dtype=np.float64).T.reshape(len(columns[0]), len(columns))


def _imputer(step: SimpleImputer) -> Step:
    # A callable strategy (the numeric block's column-wise np.median) is only used by fit:
    # the transform reads statistics_, whatever computed them.
    known = ("mean", "median", "most_frequent", "constant")
    if not callable(step.strategy) and step.strategy not in known:
        raise NotCompilable(f"imputer strategy {step.strategy!r}")
    if not (isinstance(step.missing_values, float) and math.isnan(step.missing_values)):
        raise NotCompilable("imputer missing_values other than NaN")
    statistics = np.asarray(step.statistics_, dtype=np.float64)
    keep = (
        np.arange(statistics.size)
        if step.keep_empty_features
        else np.flatnonzero(~np.isnan(statistics))
    )
    indicator = step.indicator_.features_ if step.add_indicator else None

    def run(columns: Columns | np.ndarray) -> np.ndarray:
        X = _as_matrix(columns)
        missing = np.isnan(X)
        imputed = np.where(missing, statistics, X)[:, keep]
        if indicator is None:
            return imputed
        return np.hstack((imputed, missing[:, indicator]))

    return run


def _scaler(step: StandardScaler) -> Step:
    mean = step.mean_ if step.with_mean else None
    scale = step.scale_ if step.with_std else None

    def run(X: np.ndarray) -> np.ndarray:
        X = X.astype(np.float64, copy=True)
        if mean is not None:
            X -= mean
        if scale is not None:
            X /= scale
        return X

    return run


def _as_text(value: Any) -> str:
    return MISSING if value is None else str(value)


def _category_text(step: CategoryText) -> Step:
    def run(columns: Columns) -> Columns:
        return [[_as_text(v) for v in values] for values in columns]

    return run


def _one_hot(step: OneHotEncoder) -> Step:
    """Replay a one-hot encoder, with its infrequent ("Other") column when it has one.

    Read from public attributes only: ``categories_``, ``infrequent_categories_`` and the
    documented layout of a column's block (its frequent levels in ``categories_`` order,
    then one column for every infrequent level). ``handle_unknown="infrequent_if_exist"``
    sends an unknown level to that column, or to none without one; ``"ignore"`` to none.
    """
    if step.drop_idx_ is not None:
        raise NotCompilable("one-hot encoder with drop")
    if step.handle_unknown not in ("ignore", "infrequent_if_exist"):
        raise NotCompilable(f"one-hot encoder with handle_unknown={step.handle_unknown!r}")
    if step.min_frequency is not None or step.max_categories is not None:
        rare_levels = step.infrequent_categories_
    else:
        rare_levels = [None] * len(step.categories_)
    lookups, unknown, offsets, width = [], [], [], 0
    for categories, rare in zip(step.categories_, rare_levels, strict=True):
        rare = set() if rare is None else {str(c) for c in rare}
        frequent = [str(c) for c in categories if str(c) not in rare]
        lookup = {level: i for i, level in enumerate(frequent)}
        other = len(frequent) if rare else None  # the block's last column
        lookup.update(dict.fromkeys(rare, other))
        lookups.append(lookup)
        unknown.append(other if step.handle_unknown == "infrequent_if_exist" else None)
        offsets.append(width)
        width += len(frequent) + (1 if rare else 0)

    def run(columns: Columns) -> np.ndarray:
        n = len(columns[0])
        out = np.zeros((n, width), dtype=np.float64)
        for lookup, fallback, offset, values in zip(
            lookups, unknown, offsets, columns, strict=True
        ):
            for row, value in enumerate(values):
                position = lookup.get(value, fallback)
                if position is not None:  # an unknown level without an "Other": all zeros
                    out[row, offset + position] = 1.0
        return out

    return run


def _target_encoder(step: TargetEncoder) -> Step:
    if step.target_type_ != "binary":
        raise NotCompilable(f"target encoder for a {step.target_type_} target")
    mean = float(step.target_mean_)
    lookups = [
        {str(c): float(e) for c, e in zip(categories, encoding, strict=True)}
        for categories, encoding in zip(step.categories_, step.encodings_, strict=True)
    ]

    def run(columns: Columns) -> np.ndarray:
        n = len(columns[0])
        out = np.empty((n, len(lookups)), dtype=np.float64)
        for j, (lookup, values) in enumerate(zip(lookups, columns, strict=True)):
            out[:, j] = [lookup.get(value, mean) for value in values]
        return out

    return run


def _function(step: FunctionTransformer) -> Step:
    if step.func is not as_float32:
        raise NotCompilable(f"function {step.func!r}")
    return lambda X: as_float32(_as_matrix(X))


def _compile_step(step) -> Step:
    compilers = (
        (FunctionTransformer, _function),
        (DateParts, _date_parts),
        (SimpleImputer, _imputer),
        (StandardScaler, _scaler),
        (CategoryText, _category_text),
        (OneHotEncoder, _one_hot),
        (TargetEncoder, _target_encoder),
    )
    for kind, compiler in compilers:
        if type(step) is kind:
            return compiler(step)
    raise NotCompilable(f"step {type(step).__name__} is not replayed")


@dataclass(frozen=True)
class _Block:
    indices: list[int]
    steps: list[Step]

    def run(self, columns: Columns) -> np.ndarray:
        data: Any = [columns[i] for i in self.indices]
        for step in self.steps:
            data = step(data)
        return _as_matrix(data)


def _hidden(name: str) -> Callable[[np.ndarray], np.ndarray]:
    functions = {
        "identity": lambda X: X,
        "logistic": lambda X: expit(X, out=X),
        "tanh": lambda X: np.tanh(X, out=X),
        "relu": lambda X: np.maximum(X, 0, out=X),
    }
    if name not in functions:
        raise NotCompilable(f"activation {name!r}")
    return functions[name]


def _estimator(model) -> Callable[[np.ndarray], np.ndarray]:
    if type(model) is CalibratedModel:
        # The served probability is the calibrated one: the inner model replayed, then its
        # fitted map (a few microseconds on a batch, so it stays in scikit-learn).
        inner, mapping = _estimator(model.model), model.calibration

        def calibrated(X: np.ndarray) -> np.ndarray:
            return mapping.transform(inner(X))

        return calibrated
    if type(model) is MLPClassifier:
        if model.out_activation_ != "logistic" or len(model.classes_) != 2:
            raise NotCompilable("only binary networks are replayed")
        layers = list(zip(model.coefs_, model.intercepts_, strict=True))
        hidden = _hidden(model.activation)

        def mlp(X: np.ndarray) -> np.ndarray:
            activation = X
            for i, (coef, intercept) in enumerate(layers):
                activation = activation @ coef
                activation += intercept
                if i < len(layers) - 1:
                    hidden(activation)
            return expit(activation, out=activation).ravel()

        return mlp
    if type(model) is LogisticRegression and len(model.classes_) == 2:
        coef, intercept = model.coef_.T, model.intercept_

        def logistic(X: np.ndarray) -> np.ndarray:
            return expit((X @ coef + intercept).ravel())

        return logistic
    if not hasattr(model, "predict_proba"):
        raise NotCompilable(f"{type(model).__name__} has no predict_proba")
    return lambda X: model.predict_proba(X)[:, 1]


@dataclass(frozen=True)
class CompiledPipeline:
    """A fitted pipeline replayed with numpy on rows of Python values.

    Attributes:
        columns: The input columns, in the order rows give their values.
        width: Number of encoded features (the pipeline's transformed width).
    """

    columns: list[str]
    width: int
    _blocks: list[_Block]
    _predict: Callable[[np.ndarray], np.ndarray]

    def transform(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        """Encode rows as the pipeline's preprocessing does.

        Args:
            rows: One sequence of values per row, in :attr:`columns` order: naive
                ``datetime`` for dates, ``float`` or ``None`` for numbers, ``str`` or
                ``None`` for categories.

        Returns:
            The encoded matrix, ``(len(rows), width)``.
        """
        if not rows:
            return np.empty((0, self.width), dtype=np.float64)
        columns = [list(values) for values in zip(*rows, strict=True)]
        return np.hstack([block.run(columns) for block in self._blocks])

    def predict_proba(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        """Return the probability of class 1 for each row.

        Args:
            rows: As for :meth:`transform`.

        Returns:
            One probability per row.
        """
        if not rows:
            return np.empty(0, dtype=np.float64)
        return np.asarray(self._predict(self.transform(rows)), dtype=np.float64)


def compile_pipeline(pipeline: Pipeline, columns: Sequence[str]) -> CompiledPipeline:
    """Compile a fitted ``preprocess`` + ``model`` pipeline.

    Args:
        pipeline: A fitted pipeline made by the training stage.
        columns: Its input columns, in the order rows will give their values.

    Returns:
        The compiled pipeline.

    Raises:
        NotCompilable: If a step or option is not replayed (use the pipeline instead).
    """
    steps = dict(getattr(pipeline, "steps", []))
    preprocess, model = steps.get("preprocess"), steps.get("model")
    if not isinstance(preprocess, ColumnTransformer) or model is None:
        raise NotCompilable("expected a pipeline of 'preprocess' (ColumnTransformer) and 'model'")
    if list(preprocess.feature_names_in_) != list(columns):
        raise NotCompilable("the pipeline's input columns differ from the given columns")
    if preprocess.sparse_output_:
        raise NotCompilable("sparse preprocessing output")
    position = {name: i for i, name in enumerate(columns)}
    blocks = []
    for name, transformer, block_columns in preprocess.transformers_:
        if transformer == "drop" or len(block_columns) == 0:
            continue
        if name == "remainder" or transformer == "passthrough":
            raise NotCompilable("a remainder or passthrough block")
        inner = transformer.steps if isinstance(transformer, Pipeline) else [(name, transformer)]
        blocks.append(
            _Block(
                indices=[position[c] for c in block_columns],
                steps=[_compile_step(step) for _, step in inner],
            )
        )
    width = len(preprocess.get_feature_names_out())
    return CompiledPipeline(
        columns=list(columns), width=width, _blocks=blocks, _predict=_estimator(model)
    )


def max_difference(
    compiled: CompiledPipeline, pipeline: Pipeline, frame, rows: Sequence[Sequence[Any]]
) -> float:
    """Compare the compiled pipeline with the pipeline itself on the same rows.

    Args:
        compiled: The compiled pipeline.
        pipeline: The fitted pipeline (the reference).
        frame: The rows as a typed frame with the pipeline's input columns.
        rows: The same rows as value sequences (see :meth:`CompiledPipeline.transform`).

    Returns:
        The largest absolute difference between the two probabilities of class 1.
    """
    reference = pipeline.predict_proba(frame[compiled.columns])[:, 1]
    return float(np.max(np.abs(compiled.predict_proba(rows) - reference), initial=0.0))
