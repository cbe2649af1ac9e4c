"""The HTTP API: two served models behind one typed input contract (BentoML 1.4).

Three BentoML services, each in its own process when served:

* :class:`PrimaryModel` and :class:`SecondaryModel` each load one served pipeline from the
  model store and expose a batchable ``predict_proba``: BentoML's dispatcher merges the
  rows of concurrent requests into one call (adaptive batching). The pipeline runs through
  its compiled numpy replay (:mod:`bentos.compiled`), checked against the pipeline itself
  at start-up.
* :class:`PredictionService`, the front, composes the two with ``bentoml.depends``. It
  validates requests against the models' input contract, answers with labels, logs every
  prediction to MongoDB off the request path, and serves the service's info and ``/reload``.

Around the front: the REST resources over the store (records, logs, feedback) are a FastAPI
app mounted next to the prediction routes (:mod:`bentos.resources`); one ASGI middleware
checks the API key, body size and content type and gives every error one schema
(:mod:`bentos.guard`); ``/docs.json`` is one OpenAPI document of all of it
(:mod:`bentos.openapi`).

Nothing about a dataset is written here: the dataset name comes from the ``dataset``
argument (``bentoml serve ... --arg dataset=NAME``, recorded in a built Bento), else the
default config's name; features, labels and thresholds come from the models' metadata.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import time
import uuid
from typing import Annotated, Any, ClassVar, Literal

import bentoml
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from starlette.responses import JSONResponse

from bentos.guard import (
    API_KEY_ENV,
    ApiError,
    ErrorItem,
    RequestGuard,
    error_response,
    max_body_bytes,
    quiet_client_errors,
)
from bentos.registry import ServedModel, served_model, served_model_from_tag
from bentos.resources import build_app
from bentos.runtime import call_model, incompatible
from tabular.contract import InputRejected
from tabular.errors import StoreUnavailable

logger = logging.getLogger("bentoml.service")

#: Most rows a batch request may carry (documented in OpenAPI; more is a 400).
MAX_BATCH_ROWS = 1000
#: Rows the model services' dispatcher may merge into one call: a whole batch request fits.
MODEL_BATCH_ROWS = 1000
#: The dispatcher sheds a request (503) only when it expects to miss this bound. A 20 ms bound
#: shed hundreds of requests at 32 clients; whole requests take about 100 ms at p99 there
#: (benchmarks/serving.py), so 2 s sheds only under a real overload.
MODEL_MAX_LATENCY_MS = 2000
#: The front's client session to a model service is never renewed. BentoML 1.4 renews it
#: every 100 requests by default and closes the old one with requests still in flight,
#: which fails them ("Server disconnected": hundreds of 500s at 8 clients and more; a related
#: report is BentoML issue #5540). The peer is a local socket that never moves.
RUNNER_CONNECTION = {"max_requests": 2**62, "max_age": 1e12}
#: Service settings measured with benchmarks/serving.py (32 clients, 2 cores):
#: * tracing off for every route: BentoML 1.4's sampler records every span even when none is
#:   exported, and the spans outlived their requests (about one retained per request in the
#:   front and in each model process), so garbage collections grew to 50-200 ms pauses that
#:   all in-flight requests waited for; off, the same load ran at twice the requests/s;
#: * short request timeouts: BentoML's timeout middleware leaves a timer (with the request's
#:   context) alive for the whole timeout after each request; 10 s bounds what the model
#:   processes keep, 30 s covers the slowest CRUD query on the embedded store (8 s measured
#:   for a first scan of the full flights dataset);
#: * no access log: every prediction is already in MongoDB.
MODEL_TIMEOUT_S, FRONT_TIMEOUT_S = 10, 30


def _settings(timeout: float) -> dict[str, Any]:
    """Fresh service settings (BentoML may change the dicts it is given)."""
    return {
        "traffic": {"timeout": timeout},
        "logging": {"access": {"enabled": False}},
        "tracing": {"excluded_urls": ".*"},
    }


#: Set to 0 to serve without logging predictions (to measure the logging's cost).
LOG_ENV = "MLOPS_LOG_PREDICTIONS"


class ServeArgs(BaseModel):
    """Arguments of ``bentoml serve``/``bentoml build`` (``--arg dataset=NAME``), kept in a Bento.

    Attributes:
        dataset: The dataset whose two served models to serve (default: the default
            config's dataset).
        primary: Exact model-store tag of the primary model (default: its latest version).
        secondary: Exact model-store tag of the secondary model (default: its latest).
    """

    dataset: str | None = None
    primary: str | None = None
    secondary: str | None = None


def _served() -> tuple[str, ServedModel, ServedModel]:
    args = bentoml.use_arguments(ServeArgs)
    dataset = args.dataset
    if not dataset:
        from tabular.config import DEFAULT_CONFIG, load_config

        dataset = load_config(DEFAULT_CONFIG).name
    # A built Bento records the exact tags it was built with, so it keeps serving them after
    # a later run saves newer models.
    versions = [(tag or "").partition(":")[2] or "latest" for tag in (args.primary, args.secondary)]
    primary = served_model(dataset, "primary", versions[0])
    secondary = served_model(dataset, "secondary", versions[1])
    if primary.contract.names != secondary.contract.names:
        raise RuntimeError(
            f"{primary.tag} and {secondary.tag} take different inputs; retrain both with `make run`"
        )
    return dataset, primary, secondary


DATASET, PRIMARY, SECONDARY = _served()
#: The one definition of a valid request: both models share it.
CONTRACT = PRIMARY.contract
Features = CONTRACT.request_model()
SERVED = {"primary": PRIMARY, "secondary": SECONDARY}


# -- the two model services ------------------------------------------------------------------


def freeze_startup_objects() -> None:
    """Keep the objects made at start-up (libraries, pipeline, contract) out of later collections.

    A full garbage collection scans every tracked object; the hundreds of thousands loaded at
    start-up never become garbage, so scanning them only lengthens the pauses that every
    in-flight request waits for.
    """
    gc.collect()
    gc.freeze()


class _ModelRunner:
    """One served pipeline in its own process, answering batches of rows."""

    served: ClassVar[ServedModel]

    def __init__(self) -> None:
        from bentos.runtime import load_predictor

        self.predictor = load_predictor(self.served)
        self.pending: tuple[str | None, Any] = (None, None)  # a model loaded by /reload
        freeze_startup_objects()

    @bentoml.api(
        batchable=True, max_batch_size=MODEL_BATCH_ROWS, max_latency_ms=MODEL_MAX_LATENCY_MS
    )
    async def predict_proba(self, rows: list[list[Any]]) -> list[float]:
        """Return the probability of class 1 for rows of values in the contract's order."""
        # Async on purpose: a merged batch takes well under a millisecond per few dozen rows,
        # less than handing it to a worker thread would cost.
        return self.predictor.predict_proba(rows).tolist()

    @bentoml.api
    def load(self, tag: str) -> str:
        """Load another model next to the served one (the first half of a reload)."""
        from bentos.registry import served_model_from_tag
        from bentos.runtime import load_predictor

        served = served_model_from_tag(tag)
        self.pending = (served.tag, load_predictor(served))
        return served.tag

    @bentoml.api
    async def activate(self, tag: str) -> str:
        """Answer with the model loaded by ``load`` from now on (the second half)."""
        pending_tag, predictor = self.pending
        if pending_tag != tag:
            raise ValueError(f"{tag} was not loaded; {pending_tag} was")
        self.predictor, self.pending = predictor, (None, None)
        return tag


@bentoml.service(workers=1, runner_connection=dict(RUNNER_CONNECTION), **_settings(MODEL_TIMEOUT_S))
class PrimaryModel(_ModelRunner):
    """The champion model (``<dataset>-primary``)."""

    served = PRIMARY
    model = bentoml.models.BentoModel(PRIMARY.tag)


@bentoml.service(workers=1, runner_connection=dict(RUNNER_CONNECTION), **_settings(MODEL_TIMEOUT_S))
class SecondaryModel(_ModelRunner):
    """The challenger model (``<dataset>-secondary``)."""

    served = SECONDARY
    model = bentoml.models.BentoModel(SECONDARY.tag)


# -- request and response bodies -------------------------------------------------------------


class Prediction(BaseModel):
    """One model's answer for one row.

    Attributes:
        request_id: Id of this prediction (its log's key; post feedback with it).
        model: ``primary`` or ``secondary``.
        model_tag: The model-store tag that answered.
        probability: Probability of the positive class.
        prediction: 1 when ``probability >= threshold``, else 0.
        label: The class label of ``prediction``.
        threshold: The model's decision threshold (chosen on validation).
        unseen: Category fields whose value was never seen in training (handled as the
            pipeline handles rare levels).
    """

    request_id: str
    model: Literal["primary", "secondary"]
    model_tag: str
    probability: float
    prediction: int
    label: str
    threshold: float
    unseen: list[str]


class BatchRow(BaseModel):
    """One row's answer inside a batch.

    Attributes:
        request_id: Id of this prediction.
        probability: Probability of the positive class.
        prediction: 0 or 1.
        label: The class label of ``prediction``.
        unseen: Category fields never seen in training.
    """

    request_id: str
    probability: float
    prediction: int
    label: str
    unseen: list[str]


class BatchPrediction(BaseModel):
    """The primary model's answers for a batch, in the rows' order.

    Attributes:
        model: Always ``primary``.
        model_tag: The model-store tag that answered.
        threshold: The decision threshold.
        predictions: One answer per row.
    """

    model: Literal["primary", "secondary"]
    model_tag: str
    threshold: float
    predictions: list[BatchRow]


class Comparison(BaseModel):
    """Both models on the same row.

    Attributes:
        primary: The champion's answer.
        secondary: The challenger's answer.
        agree: Whether both predict the same class.
        difference: ``primary.probability - secondary.probability``.
    """

    primary: Prediction
    secondary: Prediction
    agree: bool
    difference: float


class ModelInfo(BaseModel):
    """A served model's provenance.

    Attributes:
        role: ``primary`` or ``secondary``.
        tag: Model-store tag.
        family: Model family.
        label: Human name.
        run_id: The pipeline run that trained it.
        data_hash: Hash of its training data.
        threshold: Decision threshold.
        metrics: Metrics per split (``validation``, ``test``) of the selected-feature model.
    """

    role: str
    tag: str
    family: str
    label: str
    run_id: str
    data_hash: str
    threshold: float
    metrics: dict[str, Any]


class ServiceInfo(BaseModel):
    """What the service serves.

    Attributes:
        dataset: The dataset the models were trained on.
        question: The question they answer.
        class_labels: Names of class 0 and class 1.
        features: The input fields, in order.
        roles: Input fields by kind (``datetime``, ``category``, ``number``).
        example: A valid request body (a real training row): ``/predict`` accepts it as is.
        max_batch_rows: Most rows a batch request may carry.
        models: The two served models.
        store: Where prediction logs and records are stored.
    """

    dataset: str
    question: str
    class_labels: list[str]
    features: list[str]
    roles: dict[str, list[str]]
    example: dict[str, Any]
    max_batch_rows: int
    models: list[ModelInfo]
    store: str


class Reloaded(BaseModel):
    """What ``/reload`` did.

    Attributes:
        previous: The tags served before (primary, secondary).
        current: The tags served now.
        seconds: Time to load and check the new models (requests kept being answered).
        paused_ms: Time new predictions waited while the models were switched.
    """

    previous: list[str]
    current: list[str]
    seconds: float
    paused_ms: float


# -- request bodies: every wrapper refuses unknown fields ------------------------------------
# BentoML builds a route's body model from the method's parameters, and that model ignores
# unknown keys; these models, given as ``input_spec``, refuse them. A body of one row is the
# contract's own model, which already refuses them.

_STRICT = ConfigDict(extra="forbid")
#: An exact model-store tag, ``name:version``, as BentoML writes them (lower case).
MODEL_TAG = r"^[a-z0-9][a-z0-9._-]*:[a-z0-9][a-z0-9._-]*$"


class PredictWithRequest(BaseModel):
    """The body of ``/predict_with``.

    Attributes:
        model: ``primary`` or ``secondary``.
        features: One row.
    """

    model_config = _STRICT

    model: Literal["primary", "secondary"]
    features: Features  # type: ignore[valid-type]


class BatchRequest(BaseModel):
    """The body of ``/predict_batch``.

    Attributes:
        rows: 1 to ``MAX_BATCH_ROWS`` rows.
    """

    model_config = _STRICT

    # Checked in the route as a whole, column by column, by the same contract (the schema
    # still shows the rows' fields): one pydantic model per row costs more than the prediction.
    rows: list[Annotated[Any, WithJsonSchema(Features.model_json_schema())]] = Field(
        min_length=1, max_length=MAX_BATCH_ROWS, description=f"1 to {MAX_BATCH_ROWS} rows."
    )


class ReloadRequest(BaseModel):
    """The body of ``/reload``: the exact model-store tags to serve.

    Attributes:
        primary: Tag of the new primary model.
        secondary: Tag of the new secondary model.
    """

    model_config = _STRICT

    primary: str = Field(
        max_length=200, pattern=MODEL_TAG, description="<dataset>-primary:<version>"
    )
    secondary: str = Field(max_length=200, pattern=MODEL_TAG)


class NoBody(BaseModel):
    """An empty JSON object (or no body): the route takes no input."""

    model_config = _STRICT


# -- the front service -----------------------------------------------------------------------


def _rejected(exc: InputRejected):
    """A batch's 400: one problem per refused field, located as ``rows.<row>.<field>``."""
    detail = [
        ErrorItem(loc=["rows", p.row, p.field], msg=p.message, type="value_error")
        for p in exc.problems
    ]
    first = exc.problems[0]
    message = f"rows.{first.row}.{first.field}: {first.message}"
    if len(exc.problems) > 1:
        message += f" (and {len(exc.problems) - 1} more problem(s), see detail)"
    return JSONResponse(ApiError(error=message, detail=detail).model_dump(), status_code=400)


@bentoml.service(workers=1, threads=4, **_settings(FRONT_TIMEOUT_S))
class PredictionService:
    """Predicts with two models behind one typed input contract, and logs every prediction.

    ``/reload`` needs the ``X-API-Key`` header (checked by :class:`bentos.guard.RequestGuard`,
    as for every write). Errors are :class:`bentos.guard.ApiError` bodies.
    """

    primary = bentoml.depends(PrimaryModel)
    secondary = bentoml.depends(SecondaryModel)

    def __init__(self) -> None:
        from store import StoreSettings, connect

        settings = StoreSettings.from_env()
        # check=False: the service starts while MongoDB is down (logs go to the journal).
        self.store = connect(settings, check=False).describe()
        # Logging every prediction is the default; MLOPS_LOG_PREDICTIONS=0 turns it off, to
        # measure what it costs (benchmarks/serving.py).
        logging_on = os.environ.get(LOG_ENV, "1").strip().lower() not in ("0", "false", "no")
        if logging_on:
            from bentos.logs import PredictionLogWriter, count_outcome

            count_outcome("stored", 0)  # the /metrics counter shows every outcome from the start
            self.writer = PredictionLogWriter(settings.journal_path, on_outcome=count_outcome)
        else:
            self.writer = None
        self.runners = {"primary": self.primary, "secondary": self.secondary}
        # Request ids: a random prefix per process and a counter. Unique like a uuid4, without
        # a system call per id (uuid4 took 8 % of the front's time on 1,000-row batches).
        self._id_prefix = uuid.uuid4().hex[:20]
        self._ids = itertools.count()
        # The served models by role; /reload replaces them. Predictions in flight and the
        # reload's switch never overlap (see _enter and reload).
        self.served: dict[str, ServedModel] = dict(SERVED)
        self._inflight = 0
        self._gate: asyncio.Event | None = None  # set while a reload switches models
        self._drained: asyncio.Event | None = None
        self._reloading: asyncio.Lock | None = None
        logger.info("serving %s and %s; logs go to %s", PRIMARY.tag, SECONDARY.tag, self.store)
        freeze_startup_objects()

    @bentoml.on_shutdown
    def close(self) -> None:
        """Flush the prediction logs still queued in memory."""
        if self.writer is not None:
            self.writer.close()

    # -- predictions ---------------------------------------------------------------------

    async def _enter(self) -> None:
        """Wait while a reload switches models, then count this prediction as in flight."""
        while self._gate is not None:
            await self._gate.wait()
        self._inflight += 1

    def _leave(self) -> None:
        self._inflight -= 1
        if self._inflight == 0 and self._drained is not None:
            self._drained.set()

    async def _predict(
        self, role: str, rows: list[list[Any]], started: float
    ) -> tuple[ServedModel, list[tuple[str, float, int, list[str]]]]:
        await self._enter()
        try:
            # Captured once: the answer, its log and the response name the same model even
            # if a reload happens meanwhile.
            served = self.served[role]
            probabilities = await call_model(self.runners[role].to_async.predict_proba, rows)
        finally:
            self._leave()
        latency_ms = (time.perf_counter() - started) * 1000.0
        ids = [f"{self._id_prefix}{next(self._ids):012x}" for _ in rows]
        predictions = [int(probability >= served.threshold) for probability in probabilities]
        if self.writer is not None:
            from bentos.logs import log_documents

            documents = log_documents(
                served, CONTRACT.names, ids, rows, probabilities, predictions, latency_ms
            )
            try:  # answered once its logs are durable: stored, journaled or set aside
                await asyncio.wrap_future(self.writer.submit(documents))
            except StoreUnavailable as exc:
                raise bentoml.exceptions.ServiceUnavailable(str(exc)) from None
        answers = [
            (request_id, float(probability), prediction, served.contract.unseen(values))
            for request_id, probability, prediction, values in zip(
                ids, probabilities, predictions, rows, strict=True
            )
        ]
        return served, answers

    async def _one(self, role: str, features: BaseModel, started: float) -> Prediction:
        served, ((request_id, probability, prediction, unseen),) = await self._predict(
            role, [CONTRACT.values(features)], started
        )
        return Prediction(
            request_id=request_id,
            model=role,
            model_tag=served.tag,
            probability=probability,
            prediction=prediction,
            label=served.class_labels[prediction],
            threshold=served.threshold,
            unseen=unseen,
        )

    @bentoml.api(route="/predict")
    async def predict(self, features: Features, /) -> Prediction:  # type: ignore[valid-type]
        """Predict one row with the primary (champion) model.

        The body is one row: every input field, by name (see the schema). Values outside
        the data gate's ranges, wrong types, unknown or missing fields get a 400 naming the
        field. A category never seen in training is accepted and listed in ``unseen``.
        """
        return await self._one("primary", features, time.perf_counter())

    @bentoml.api(route="/predict_with", input_spec=PredictWithRequest)
    async def predict_with(
        self,
        model: Literal["primary", "secondary"],
        features: Features,  # type: ignore[valid-type]
    ) -> Prediction:
        """Predict one row with the named model (``primary`` or ``secondary``)."""
        return await self._one(model, features, time.perf_counter())

    @bentoml.api(route="/compare")
    async def compare(self, features: Features, /) -> Comparison:  # type: ignore[valid-type]
        """Predict one row with both models (each answer is logged with its own id)."""
        started = time.perf_counter()
        primary, secondary = await asyncio.gather(
            self._one("primary", features, started), self._one("secondary", features, started)
        )
        return Comparison(
            primary=primary,
            secondary=secondary,
            agree=primary.prediction == secondary.prediction,
            difference=primary.probability - secondary.probability,
        )

    @bentoml.api(route="/predict_batch", input_spec=BatchRequest)
    async def predict_batch(self, rows: list[Any], ctx: bentoml.Context) -> BatchPrediction:
        """Predict up to 1000 rows with the primary model, in one call; each row is logged."""
        started = time.perf_counter()
        try:
            values = CONTRACT.check_batch(rows)
        except InputRejected as exc:
            ctx.response.status_code = 400
            return _rejected(exc)
        served, answers = await self._predict("primary", values, started)
        labels = served.class_labels
        return BatchPrediction.model_construct(
            model="primary",
            model_tag=served.tag,
            threshold=served.threshold,
            predictions=[
                BatchRow.model_construct(
                    request_id=request_id,
                    probability=probability,
                    prediction=prediction,
                    label=labels[prediction],
                    unseen=unseen,
                )
                for request_id, probability, prediction, unseen in answers
            ],
        )

    # -- info ----------------------------------------------------------------------------

    @bentoml.api(route="/info", input_spec=NoBody)
    def info(self) -> ServiceInfo:
        """The served models' tags, run id, data hash, test metrics, input fields and an example."""
        return ServiceInfo(
            dataset=DATASET,
            question=PRIMARY.question,
            class_labels=list(PRIMARY.class_labels),
            features=CONTRACT.names,
            roles=CONTRACT.roles,
            example=CONTRACT.example,
            max_batch_rows=MAX_BATCH_ROWS,
            models=[
                ModelInfo(
                    role=served.role,
                    tag=served.tag,
                    family=served.family,
                    label=served.label,
                    run_id=served.run_id,
                    data_hash=served.data_hash,
                    threshold=served.threshold,
                    metrics=served.metrics,
                )
                for served in self.served.values()
            ],
            store=self.store,
        )

    # -- reload --------------------------------------------------------------------------

    @bentoml.api(route="/reload", input_spec=ReloadRequest)
    async def reload(self, primary: str, secondary: str, ctx: bentoml.Context) -> Reloaded:
        """Serve other models (a promoted champion) without a restart (needs ``X-API-Key``).

        ``primary`` and ``secondary`` are exact model-store tags. Both models are loaded and
        checked while the current ones keep answering; then new predictions wait (a few
        milliseconds) until those in flight are answered, the models are switched, and they
        proceed: no request is refused or lost. A model whose inputs differ from the served
        request schema needs a restart (409 says so); an unknown tag is a 404.
        """
        started = time.perf_counter()
        new = {}
        for role, tag in (("primary", primary), ("secondary", secondary)):
            try:
                new[role] = await asyncio.to_thread(served_model_from_tag, tag)
            except Exception as exc:  # NotFound, or a model saved without a contract
                return self._status(ctx, 404, f"{role}: cannot read model '{tag}' ({exc})", role)
            problem = incompatible(CONTRACT, new[role].contract)
            if new[role].role != role or new[role].dataset != DATASET:
                problem = f"it is a {new[role].role} model of '{new[role].dataset}'"
            if problem:
                return self._status(
                    ctx,
                    409,
                    f"{role}: {tag} cannot replace {self.served[role].tag}: {problem}",
                    role,
                )
        self._reloading = self._reloading or asyncio.Lock()
        async with self._reloading:
            try:
                await asyncio.gather(
                    *(
                        self.runners[r].to_async.load(tag=new[r].tag)
                        for r in ("primary", "secondary")
                    )
                )
            except Exception as exc:
                return self._status(ctx, 409, f"loading the new models failed: {exc}", None)
            loaded = time.perf_counter()
            previous = [self.served[r].tag for r in ("primary", "secondary")]
            self._gate, self._drained = asyncio.Event(), asyncio.Event()
            try:
                if self._inflight:
                    await self._drained.wait()
                await asyncio.gather(
                    *(self.runners[r].to_async.activate(tag=new[r].tag) for r in new)
                )
                self.served = {**self.served, **new}
            finally:
                gate, self._gate, self._drained = self._gate, None, None
                gate.set()
        logger.info("reloaded: now serving %s and %s", primary, secondary)
        return Reloaded(
            previous=previous,
            current=[new["primary"].tag, new["secondary"].tag],
            seconds=round(loaded - started, 3),
            paused_ms=round((time.perf_counter() - loaded) * 1000.0, 3),
        )

    @staticmethod
    def _status(ctx: bentoml.Context, status: int, message: str, field: str | None):
        # A route taking the context answers with the context's status code.
        ctx.response.status_code = status
        return error_response(status, message, [field] if field else None)


# -- the one-process variant (for the benchmark) ------------------------------------------------


class _LocalRunner:
    """A served model held in the calling process, with the call shape of a dependency."""

    def __init__(self, served: ServedModel) -> None:
        from bentos.runtime import load_predictor

        self.predictor = load_predictor(served)
        self.to_async = self

    async def predict_proba(self, rows: list[list[Any]]) -> list[float]:
        """Return the probability of class 1 for each row (no batching across requests)."""
        return self.predictor.predict_proba(rows).tolist()

    async def load(self, tag: str) -> str:
        """Load another model next to the served one (see ``_ModelRunner.load``)."""
        from bentos.registry import served_model_from_tag
        from bentos.runtime import load_predictor

        served = served_model_from_tag(tag)
        self.pending = (served.tag, await asyncio.to_thread(load_predictor, served))
        return served.tag

    async def activate(self, tag: str) -> str:
        """Answer with the model loaded by ``load`` from now on."""
        self.predictor = self.pending[1]
        return tag


@bentoml.service(workers=1, threads=4, **_settings(FRONT_TIMEOUT_S))
class OneProcessService(PredictionService.inner):
    """The same API with both models in the front's own process: no hop, no adaptive batching.

    Kept to measure what the two-service composition costs and buys
    (``benchmarks/serving.py``); ``PredictionService`` is the one built and served.
    """

    primary = None  # no dependency: the models are loaded below
    secondary = None

    def __init__(self) -> None:
        self.primary = _LocalRunner(PRIMARY)
        self.secondary = _LocalRunner(SECONDARY)
        super().__init__()


# -- around the front: the REST resources, the guard, the one OpenAPI document -------------


#: Error statuses of the prediction routes besides those every route has (documented).
_OVERLOADED = (
    "A model process is overloaded or unreachable, or the prediction's log could be neither "
    "stored, journaled nor set aside; retry later."
)
ROUTE_ERRORS = {
    "predict": {503: _OVERLOADED},
    "predict_with": {503: _OVERLOADED},
    "compare": {503: _OVERLOADED},
    "predict_batch": {503: _OVERLOADED},
    "reload": {
        404: "No model has this tag (the field is named).",
        409: "The model cannot replace the served one (other inputs, role or dataset), or "
        "loading it failed.",
    },
}

#: The store as REST resources (records, logs, feedback), mounted on the front.
RESOURCES = build_app(DATASET, list(PRIMARY.class_labels))


def _front(service: Any) -> Any:
    """Mount the resources, add the guard and serve the project's OpenAPI on a front service.

    ``/docs.json`` is a route of the mounted app: BentoML 1.4.39 adds its own ``/docs.json``
    after the mounted apps, so the first match is this one (tests/test_service.py checks
    the title of what is served).
    """
    from bentos.openapi import openapi_document

    quiet_client_errors()
    document: dict[str, Any] = {}

    def docs() -> dict[str, Any]:
        if not document:
            document.update(
                openapi_document(service, RESOURCES, DATASET, max_body_bytes(), ROUTE_ERRORS)
            )
        return document

    if not any(getattr(route, "path", None) == "/docs.json" for route in RESOURCES.routes):
        RESOURCES.add_api_route("/docs.json", docs, methods=["GET"], include_in_schema=False)
    service.mount_asgi_app(RESOURCES, path="/")
    service.add_asgi_middleware(
        RequestGuard,
        api_key=os.environ.get(API_KEY_ENV, "").strip() or None,
        max_body=max_body_bytes(),
        document=docs,
    )
    return service


_front(PredictionService)
_front(OneProcessService)
