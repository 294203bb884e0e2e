"""The knobs of a synthetic stream: deployments, predictors, shares, delays, faults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from feedback_stream.events import ModelKey

Encoding = Literal["ce_binary", "ce_structured", "seldon_direct", "seldon_mixed", "kserve"]
"""How a deployment's records reach Kafka (EVENTS.md §1).

``ce_binary``: CloudEvents binary binding (``ce_`` headers). ``ce_structured``:
the whole CloudEvent as the value. ``seldon_direct``: the v1 executor's own
Kafka logging (un-prefixed headers, no id). ``seldon_mixed``: one of those
three per record. ``kserve``: KServe's logger types, joined on the shared
CloudEvent id, with Seldon-shaped feedback naming it in ``requestid``.
"""
PayloadFormat = Literal["ndarray", "tensor", "tf", "v2"]
OutputStyle = Literal["proba", "label"]
DelayDistribution = Literal["exponential", "fixed", "uniform"]
FeedbackScope = Literal["predictor", "deployment"]
DuplicateMode = Literal["id", "offset", "mixed"]

KSERVE_COMPONENT = "predictor"
DEFAULT_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

INVALID_KINDS = ("protobuf", "nested_rows", "no_puid", "unknown_type", "bad_json")
"""Records the core must count as invalid, never crash on (EVENTS.md §1, §2):
a gRPC response (``application/protobuf``), rows nested too deep to have a class, a response
without ``requestid``, a type nobody reads, and a value that is not JSON."""


# --- configuration --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PredictorSpec:
    """One predictor of a deployment.

    A ``shadow`` predictor answers every request of its deployment with the
    same puid (Seldon mirrors traffic to it); the others share the requests
    by ``traffic`` weight. ``model`` is the graph node name (``modelid``).
    """

    name: str = "default"
    accuracy: float = 0.9
    shadow: bool = False
    traffic: float = 1.0
    model: str = "classifier"


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """One SeldonDeployment (or KServe InferenceService) and how it logs.

    Scores of ``ndarray`` and ``tensor`` payloads carry ``names`` (the
    classes ``t:0``, ``t:1``, ... as Seldon's sklearn server names them, or
    ``class_names``); TF, V2 and label outputs carry none, so their classes
    are the indices ``0``, ``1``, ...
    """

    name: str = "iris"
    namespace: str = "seldon"
    predictors: tuple[PredictorSpec, ...] = (
        PredictorSpec("default", 0.9),
        PredictorSpec("shadow", 0.75, shadow=True),
    )
    n_classes: int = 3
    class_names: tuple[str, ...] | None = None
    class_weights: tuple[float, ...] | None = None
    encoding: Encoding = "ce_binary"
    payload: PayloadFormat = "ndarray"
    output: OutputStyle = "proba"
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.n_classes < 2:
            raise ValueError(f"deployment {self.name}: n_classes must be >= 2")
        if not any(not p.shadow for p in self.predictors):
            raise ValueError(f"deployment {self.name}: needs a predictor that is not a shadow")
        if len({p.name for p in self.predictors}) != len(self.predictors):
            raise ValueError(f"deployment {self.name}: predictor names must be unique")
        if self.encoding == "kserve" and any(p.shadow for p in self.predictors):
            # KServe's request and response share one CloudEvent id; two
            # predictors answering one request would be one event twice.
            raise ValueError(f"deployment {self.name}: KServe has no shadow predictors")
        for sized, what in ((self.class_names, "class_names"), (self.class_weights, "weights")):
            if sized is not None and len(sized) != self.n_classes:
                raise ValueError(f"deployment {self.name}: {what} must have n_classes entries")
        for p in self.predictors:
            if not 0.0 <= p.accuracy <= 1.0:
                raise ValueError(f"predictor {p.name}: accuracy must be in [0, 1]")

    @property
    def carries_names(self) -> bool:
        """Whether responses name their classes (Seldon scores do)."""
        return self.payload in ("ndarray", "tensor") and self.output == "proba"

    @property
    def labels(self) -> tuple[str, ...]:
        """The class label of each class index, as the decoder will read it."""
        if self.carries_names:
            return self.class_names or tuple(f"t:{i}" for i in range(self.n_classes))
        return tuple(str(i) for i in range(self.n_classes))

    def model_key(self, predictor: PredictorSpec) -> ModelKey:
        """The metric labels of a predictor's outcomes.

        KServe names only the component; a V2 response body names the model.
        """
        model = predictor.model
        if self.encoding == "kserve" and self.payload != "v2":
            model = KSERVE_COMPONENT
        return ModelKey(self.namespace, self.name, predictor.name, model)


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    """Every knob of a synthetic stream. Same config, same records, byte for byte.

    Times: requests arrive at ``request_rate`` per second of event time from
    ``start_ms`` (``poisson`` or evenly spaced); a response follows after an
    exponential latency of mean ``latency_mean_s``; feedback follows the
    routed predictor's response after a delay drawn from ``feedback_delay``
    with mean ``feedback_delay_mean_s``.

    Shares: ``request_share`` of requests also log their request event;
    ``feedback_share`` get feedback, ``truth_share`` of those with a truth
    (else a reward only); ``amendment_share`` of feedbacks get a second,
    later one with a corrected truth. ``feedback_scope="predictor"`` logs the
    feedback once per answering predictor, naming it (Seldon's executor does
    this for a shadow); ``"deployment"`` sends it once, naming no model, so it
    joins every response of the puid.

    Delivery: ``disorder_share`` of records are delayed by up to
    ``disorder_max_s``; ``duplicate_share`` are delivered twice within
    ``duplicate_delay_max_s``, either re-produced (same CloudEvent id, new
    offset) or re-read (same offset); records without an id are always
    re-read. ``invalid_share`` of requests are followed by one record the
    core must reject, of a random kind of :data:`INVALID_KINDS` (delivered on
    time and once, with a puid nothing else uses). ``keyed`` records are
    keyed by puid and partitioned as Kafka's default partitioner does;
    unkeyed ones (Seldon's executor) go to any partition.
    """

    seed: int = 0
    n_requests: int = 1000
    deployments: tuple[DeploymentSpec, ...] = (DeploymentSpec(),)
    batch_min: int = 1
    batch_max: int = 1
    n_features: int = 4
    request_rate: float = 100.0
    arrivals: Literal["poisson", "uniform"] = "poisson"
    latency_mean_s: float = 0.02
    start_ms: int = DEFAULT_START_MS
    request_share: float = 1.0
    feedback_share: float = 0.5
    truth_share: float = 0.7
    feedback_delay: DelayDistribution = "exponential"
    feedback_delay_mean_s: float = 30.0
    feedback_scope: FeedbackScope = "predictor"
    feedback_echo: bool = False
    amendment_share: float = 0.0
    disorder_share: float = 0.0
    disorder_max_s: float = 0.0
    duplicate_share: float = 0.0
    duplicate_mode: DuplicateMode = "mixed"
    duplicate_delay_max_s: float = 1.0
    invalid_share: float = 0.0
    partitions: int = 1
    keyed: bool = False
    topic: str = "seldon-logs"

    def __post_init__(self) -> None:
        for name in (
            "request_share",
            "feedback_share",
            "truth_share",
            "amendment_share",
            "disorder_share",
            "duplicate_share",
            "invalid_share",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not self.deployments:
            raise ValueError("at least one deployment is needed")
        if len({(d.namespace, d.name) for d in self.deployments}) != len(self.deployments):
            raise ValueError("deployments must have distinct (namespace, name)")
        if not 1 <= self.batch_min <= self.batch_max:
            raise ValueError("need 1 <= batch_min <= batch_max")
        if self.n_requests < 0 or self.n_features < 1 or self.partitions < 1:
            raise ValueError("n_requests >= 0, n_features >= 1 and partitions >= 1 are needed")
        if self.request_rate <= 0:
            raise ValueError("request_rate must be > 0")
        for name in (
            "latency_mean_s",
            "feedback_delay_mean_s",
            "disorder_max_s",
            "duplicate_delay_max_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
