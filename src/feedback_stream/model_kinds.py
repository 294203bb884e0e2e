"""Which kind each model is, and what its response rows say in that kind.

Configuration (``--models-config``, a TOML file; ``models_config`` in the
settings) lists rules, the first matching one wins::

    [[model]]
    namespace = "prod"            # selectors: shell-style globs, "*" if left out
    deployment = "fraud-*"
    predictor = "*"
    model = "classifier"
    kind = "binary"               # classification | binary | regression
    threshold = 0.5               # binary: score >= threshold is the positive class
    positive = "1"                # binary: the positive class (default "1")
    classes = ["legit", "fraud"]  # optional: names of index outputs (column order)

TOML because Python reads it with the standard library (``tomllib``): no
dependency for a file of a few lines.

Detection without a rule (docs/model-kinds.md): a row of several numbers is
a score row (argmax, as always); an integral number, a string or a boolean
is a class. A single non-integral number per row (``0.195``) could be a
probability or a regression output: it is never made a class. The response
is refused with reason ``needs_kind`` (counted, per model and in
``feedback_stream_invalid_events_total``) until a rule declares the model's
kind.

:meth:`ModelKinds.interpret` is pure: a decoded response in, its classes,
column names and :class:`~feedback_stream.scores.ResponseScores` out, or a
:class:`~feedback_stream.decode.DecodeError` (``needs_kind``, ``bad_scores``).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Final

from feedback_stream.decode import DecodeError
from feedback_stream.events import Event, ModelKey
from feedback_stream.regression import MAX_MAGNITUDE
from feedback_stream.scores import ModelKind, ResponseScores, is_probability_row

__all__ = [
    "DEFAULT_THRESHOLD",
    "Interpretation",
    "KindRule",
    "KindSpec",
    "ModelKinds",
    "ModelKindsError",
]

DEFAULT_THRESHOLD: Final = 0.5
_SELECTORS: Final = ("namespace", "deployment", "predictor", "model")
_RULE_FIELDS: Final = frozenset((*_SELECTORS, "kind", "threshold", "positive", "classes"))
_CACHE_MAX: Final = 10_000

Interpretation = tuple[tuple[str, ...], tuple[str, ...] | None, ResponseScores | None]
"""(class of each row, column names or ``None``, scores or ``None``)."""


class ModelKindsError(ValueError):
    """The models configuration is not valid; the message names the rule and field."""


@dataclass(frozen=True, slots=True)
class KindSpec:
    """A declared kind and its options.

    ``positive`` is the positive class of a binary model (default ``"1"``,
    or the second of ``classes``); ``classes`` names index outputs in
    column order (for a binary model: negative then positive).
    """

    kind: ModelKind
    threshold: float = DEFAULT_THRESHOLD
    positive: str | None = None
    classes: tuple[str, ...] | None = None

    def binary_labels(self) -> tuple[str, str]:
        """``(negative, positive)`` of a binary model with one score per row."""
        if self.classes is not None:
            negative, positive = self.classes
            if self.positive == negative:
                negative, positive = positive, negative
            return negative, positive
        positive = self.positive if self.positive is not None else "1"
        return ("1" if positive == "0" else "0"), positive


@dataclass(frozen=True, slots=True)
class KindRule:
    """Selectors (shell-style globs) and the kind of the models they match."""

    spec: KindSpec
    namespace: str = "*"
    deployment: str = "*"
    predictor: str = "*"
    model: str = "*"

    def matches(self, key: ModelKey) -> bool:
        return (
            fnmatchcase(key.namespace, self.namespace)
            and fnmatchcase(key.deployment, self.deployment)
            and fnmatchcase(key.predictor, self.predictor)
            and fnmatchcase(key.model, self.model)
        )


def _rule(index: int, data: Any, where: str) -> KindRule:
    at = f"{where}: model rule {index + 1}"
    if not isinstance(data, Mapping):
        raise ModelKindsError(f"{at} must be a table, got {type(data).__name__}")
    unknown = sorted(set(data) - _RULE_FIELDS)
    if unknown:
        raise ModelKindsError(
            f"{at}: unknown field(s) {', '.join(unknown)}; "
            f"fields are {', '.join(sorted(_RULE_FIELDS))}"
        )
    selectors: dict[str, str] = {}
    for name in _SELECTORS:
        value = data.get(name, "*")
        if not isinstance(value, str):
            raise ModelKindsError(f"{at}: {name} must be a string (a glob), got {value!r}")
        selectors[name] = value
    try:
        kind = ModelKind(str(data.get("kind")))
    except ValueError:
        choices = ", ".join(k.value for k in ModelKind)
        raise ModelKindsError(
            f"{at}: kind must be one of {choices}, got {data.get('kind')!r}"
        ) from None
    threshold = data.get("threshold", DEFAULT_THRESHOLD)
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0.0 <= threshold <= 1.0
    ):
        raise ModelKindsError(f"{at}: threshold must be a number in [0, 1], got {threshold!r}")
    classes = data.get("classes")
    if classes is not None:
        if (
            not isinstance(classes, list)
            or not classes
            or not all(isinstance(c, str | int) for c in classes)
        ):
            raise ModelKindsError(
                f"{at}: classes must be a non-empty list of names, got {classes!r}"
            )
        classes = tuple(str(c) for c in classes)
        if len(set(classes)) != len(classes):
            raise ModelKindsError(f"{at}: classes must be distinct, got {list(classes)}")
    positive = data.get("positive")
    if positive is not None:
        if not isinstance(positive, str | int) or isinstance(positive, bool):
            raise ModelKindsError(f"{at}: positive must be a class name, got {positive!r}")
        positive = str(positive)
    if kind is not ModelKind.BINARY and ("threshold" in data or positive is not None):
        raise ModelKindsError(f'{at}: threshold and positive apply to kind = "binary" only')
    if kind is ModelKind.BINARY and classes is not None:
        if len(classes) != 2:
            raise ModelKindsError(f"{at}: a binary model has 2 classes, got {list(classes)}")
        if positive is not None and positive not in classes:
            raise ModelKindsError(
                f"{at}: positive {positive!r} is not one of classes {list(classes)}"
            )
    if kind is ModelKind.REGRESSION and classes is not None:
        raise ModelKindsError(f"{at}: a regression model has no classes")
    return KindRule(KindSpec(kind, float(threshold), positive, classes), **selectors)


class ModelKinds:
    """The declared kinds, and the reading of responses in them.

    Args:
        rules: first match wins; none matching means "detect" (module docstring).
    """

    def __init__(self, rules: Iterable[KindRule] = ()) -> None:
        self.rules = tuple(rules)
        self._specs: dict[ModelKey, KindSpec | None] = {}

    @classmethod
    def parse(cls, document: Mapping[str, Any], where: str = "models configuration") -> ModelKinds:
        """Rules from a parsed document ``{"model": [{...}, ...]}``.

        Raises:
            ModelKindsError: with the rule number and field at fault.
        """
        unknown = sorted(set(document) - {"model"})
        if unknown:
            raise ModelKindsError(
                f"{where}: unknown key(s) {', '.join(unknown)}; expected [[model]] tables"
            )
        rules = document.get("model", [])
        if not isinstance(rules, list):
            raise ModelKindsError(f"{where}: 'model' must be an array of tables ([[model]])")
        return cls(_rule(i, rule, where) for i, rule in enumerate(rules))

    @classmethod
    def load(cls, path: str | Path) -> ModelKinds:
        """Read a TOML models configuration.

        Raises:
            ModelKindsError: unreadable, not TOML, or an invalid rule.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ModelKindsError(f"models configuration {path}: {exc.strerror or exc}") from None
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ModelKindsError(f"models configuration {path} is not valid TOML: {exc}") from None
        return cls.parse(document, str(path))

    def spec(self, key: ModelKey) -> KindSpec | None:
        """The declared kind of ``key`` (first matching rule), or ``None``."""
        try:
            return self._specs[key]
        except KeyError:
            pass
        found = next((rule.spec for rule in self.rules if rule.matches(key)), None)
        if len(self._specs) < _CACHE_MAX:
            self._specs[key] = found
        return found

    def kind(self, key: ModelKey) -> tuple[ModelKind, bool]:
        """(kind, declared): undeclared models are read as classification."""
        spec = self.spec(key) if self.rules else None
        return (ModelKind.CLASSIFICATION, False) if spec is None else (spec.kind, True)

    def interpret(self, event: Event) -> Interpretation | DecodeError:
        """Read a decoded response in its model's kind (module docstring)."""
        assert event.classes is not None
        spec = self.spec(event.key) if self.rules else None
        if spec is None:
            values = event.values
            if values is not None:
                for row in values:
                    if type(row) is list:
                        if len(row) != 1:
                            continue
                        row = row[0]
                    if type(row) is float and not row.is_integer():
                        return _error(
                            event,
                            "needs_kind",
                            f"row value {row!r} is a single non-integral number: a probability or "
                            "a regression output, not a class. Declare the model's kind "
                            "(binary or regression) in the models configuration",
                        )
            return event.classes, event.names, None
        try:
            if spec.kind is ModelKind.BINARY:
                return _binary(spec, event)
            if spec.kind is ModelKind.REGRESSION:
                return _regression(event)
            return _classification(spec, event)
        except _BadScores as exc:
            return _error(event, "bad_scores", f"declared {spec.kind.value}: {exc}")


class _BadScores(Exception):
    pass


def _error(event: Event, code: str, reason: str) -> DecodeError:
    key = event.key
    model = "/".join((key.namespace, key.deployment, key.predictor, key.model))
    return DecodeError(f"response {event.puid} of model {model}: {reason}", code, event.position,
                       None, event.puid)  # fmt: skip


def _number(value: Any, where: str) -> float:
    if type(value) is not float and type(value) is not int:
        raise _BadScores(f"{where} is {value!r}, not a number")
    number = float(value)
    if not math.isfinite(number) or abs(number) > MAX_MAGNITUDE:
        raise _BadScores(f"{where} is {value!r}, not a finite number")
    return number


def _rows(event: Event) -> list[Any]:
    values = event.values
    if not isinstance(values, list) or not values:
        raise _BadScores("the response has no numeric rows")
    return values


def _binary(spec: KindSpec, event: Event) -> Interpretation:
    rows = _rows(event)
    width = len(rows[0]) if type(rows[0]) is list else 1
    if width == 2:
        labels = spec.classes
        if labels is None:
            names = event.names
            labels = names if names is not None and len(names) == 2 else ("0", "1")
        positive = spec.positive if spec.positive is not None else labels[1]
        if positive not in labels:
            raise _BadScores(
                f"positive class {positive!r} is not one of the columns {list(labels)}"
            )
        column = labels.index(positive)
        negative = labels[1 - column]
        names_out: tuple[str, ...] = labels
    elif width == 1:
        negative, positive = spec.binary_labels()
        column = 0
        names_out = (negative, positive) if spec.classes is None else spec.classes
    else:
        raise _BadScores(f"rows have {width} values: a binary model sends one score or two")
    scores: list[float] = []
    for i, row in enumerate(rows):
        if type(row) is list:
            if len(row) != width:
                raise _BadScores(f"row {i} has {len(row)} values, row 0 has {width}")
            value = row[column]
        elif width == 1:
            value = row
        else:
            raise _BadScores(f"row {i} is not a list of {width} scores")
        score = _number(value, f"row {i}")
        if not 0.0 <= score <= 1.0:
            raise _BadScores(f"row {i} score {score!r} is not a probability in [0, 1]")
        scores.append(score)
    threshold = spec.threshold
    classes = tuple(positive if s >= threshold else negative for s in scores)
    return (
        classes,
        names_out,
        ResponseScores(ModelKind.BINARY, tuple(scores), (), (negative, positive)),
    )


def _regression(event: Event) -> Interpretation:
    rows = _rows(event)
    predictions: list[float] = []
    for i, row in enumerate(rows):
        if type(row) is list:
            if len(row) != 1:
                raise _BadScores(f"row {i} has {len(row)} values: a regression model sends one")
            row = row[0]
        predictions.append(_number(row, f"row {i}"))
    classes = tuple(repr(p) for p in predictions)
    return classes, None, ResponseScores(ModelKind.REGRESSION, tuple(predictions))


def _classification(spec: KindSpec, event: Event) -> Interpretation:
    values = event.values
    classes = event.classes
    assert classes is not None
    names = event.names
    if not isinstance(values, list) or not values:
        return classes, names, None
    first = values[0]
    if type(first) is list and len(first) >= 2:
        width = len(first)
        labels: tuple[str, ...]
        if names is not None and len(names) == width:
            labels = names
        elif spec.classes is not None and len(spec.classes) == width:
            labels = spec.classes
        else:
            labels = tuple(str(i) for i in range(width))
        if all(
            type(row) is list and len(row) == width and is_probability_row(row) for row in values
        ):
            rows = tuple(tuple(float(v) for v in row) for row in values)
            predicted = tuple(labels[row.index(max(row))] for row in rows)
            return predicted, labels, ResponseScores(ModelKind.CLASSIFICATION, (), rows, labels)
        if labels is not names and spec.classes is not None:
            return tuple(_named(c, spec.classes) for c in classes), spec.classes, None
        return classes, names, None
    for i, row in enumerate(values):
        if type(row) is list and len(row) == 1:
            row = row[0]
        if type(row) is float and not row.is_integer():
            raise _BadScores(f"row {i} value {row!r} is not a class (a single non-integral number)")
    if spec.classes is not None:
        return tuple(_named(c, spec.classes) for c in classes), spec.classes, None
    return classes, names, None


def _named(label: str, classes: Sequence[str]) -> str:
    """An index class read through the configured class names."""
    if label.isdigit() and label.isascii() and int(label) < len(classes):
        return classes[int(label)]
    return label
