"""Which model answered, and which experiment it answered for: Core 2's labels.

Seldon Core 2 routes experiments in Envoy. Every model route adds a
response header ``x-seldon-route: :<model>_<version>:`` naming the model
version that answered (pipelines: ``:<pipeline>.pipeline:``), and the model
gateway copies the ``x-`` headers of the model's answer onto the record it
writes to ``<model>.outputs``. A pipeline step whose model is the default of
an experiment therefore writes to the *default* model's outputs topic, and
only this header tells that a candidate answered. Records keep the headers
of the step before them, so the header can hold several routes; the model
gateway appends the newest last.

A mirror (shadow) of a pipeline experiment is a second pipeline that gets
a copy of the request, with the same ``x-request-id``: its steps write to
their own model topics, under the mirror pipeline's ``pipeline`` header.
Nothing in a record names the experiment, so experiments to compare are
declared (``--seldon-experiments``): ``NAME=DEFAULT:OTHER[:OTHER...]`` with
models or pipelines as members. A record of a member is labelled
``deployment=NAME`` and ``predictor=default`` for the default,
``predictor=<member>`` for the others, so that the members of one
experiment are predictors of one deployment, as a v1 SeldonDeployment's
default and shadow are, and the default is the baseline of comparisons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_PREDICTOR", "Experiment", "Experiments", "routed_model"]

DEFAULT_PREDICTOR: Final = "default"
"""The predictor label of an experiment's default member (Seldon v1's default predictor)."""

_VERSION: Final = re.compile(r"_[0-9]+$")
_PIPELINE_SUFFIX: Final = ".pipeline"


def routed_model(routes: Iterable[str]) -> str | None:
    """The model the newest ``x-seldon-route`` value names, without its version.

    ``routes`` are the header's values in record order. Pipeline routes
    (``:name.pipeline:``) are skipped. ``None`` when no value names a model.

    >>> routed_model([":iris_1:", ":income-classifier_3:"])
    'income-classifier'
    """
    found: str | None = None
    for value in routes:
        for token in value.split(":"):
            token = token.strip()
            if token and not token.endswith(_PIPELINE_SUFFIX):
                found = _VERSION.sub("", token)
    return found


@dataclass(frozen=True, slots=True)
class Experiment:
    """One declared experiment: its name and members, the default first."""

    name: str
    members: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Experiment:
        """Read ``NAME=DEFAULT:OTHER[:OTHER...]``.

        Raises:
            ValueError: the text is not of that form.
        """
        name, sep, rest = text.partition("=")
        members = tuple(m.strip() for m in rest.split(":"))
        if not sep or not name.strip() or len(members) < 2 or not all(members):
            raise ValueError(
                f"experiment {text!r} must read NAME=DEFAULT:OTHER[:OTHER...] "
                "(models or pipelines, the default first)"
            )
        if len(set(members)) != len(members):
            raise ValueError(f"experiment {text!r} names a member twice")
        return cls(name.strip(), members)


class Experiments:
    """Declared experiments, looked up by member."""

    def __init__(self, experiments: Iterable[Experiment] = ()) -> None:
        self._by_member: dict[str, Experiment] = {}
        for experiment in experiments:
            for member in experiment.members:
                other = self._by_member.get(member)
                if other is not None:
                    raise ValueError(
                        f"{member!r} is a member of experiments {other.name!r} "
                        f"and {experiment.name!r}"
                    )
                self._by_member[member] = experiment

    @classmethod
    def parse(cls, texts: Iterable[str]) -> Experiments:
        """Experiments from their ``NAME=DEFAULT:OTHER`` texts (``ValueError`` if invalid)."""
        return cls(Experiment.parse(text) for text in texts)

    def find(self, *candidates: str) -> tuple[str, str] | None:
        """(experiment, predictor label) of the first candidate that is a member, if any.

        The label is ``default`` for the experiment's default, else the member's name.
        """
        for candidate in candidates:
            if candidate:
                experiment = self._by_member.get(candidate)
                if experiment is not None:
                    default = candidate == experiment.members[0]
                    return experiment.name, DEFAULT_PREDICTOR if default else candidate
        return None

    @property
    def members(self) -> Mapping[str, Experiment]:
        return self._by_member
