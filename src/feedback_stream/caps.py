"""Bounds on what the engine tracks: models, classes per model, pending puids.

No sender can make the processor's memory or a reader's work grow without
bound. Three caps, shared by every partition state of an engine:

* **models**: the first ``max_models`` model keys seen get windows and
  counters of their own; outcomes and counters of later models are folded
  into one overflow model, :data:`OVERFLOW_KEY` (``model="__overflow__"``),
  whose accuracy is still exact for what it holds.
* **classes**: per model, the classes of the allowlist and the first
  ``max_classes`` other classes seen are tracked; later classes are counted
  as :data:`OTHER_CLASS` (``__other__``) in that model's confusion counts.
  Accuracy stays exact (correctness is decided before folding); per-class
  and averaged metrics are scikit-learn-exact while a model stays under the
  cap, and treat ``__other__`` as one class past it.
* **pending**: at most ``max_pending`` puids wait in the join stores; past
  that the entries nearest their deadline are evicted (counted per event
  type, like expiry) so that the input never stops.

Each cap that bites is logged once and counted: folded models under the
overflow model's own counters (responses, outcomes), folded classes in
:attr:`Caps.folded_classes` and under ``__other__`` in the confusion
counters, evictions in :attr:`Caps.evicted`.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Final

from feedback_stream.events import ModelKey
from feedback_stream.outcomes import Outcome

__all__ = ["OTHER_CLASS", "OVERFLOW_KEY", "OVERFLOW_MODEL", "Caps"]

_log = logging.getLogger(__name__)

OVERFLOW_MODEL: Final = "__overflow__"
OVERFLOW_KEY: Final = ModelKey("", "", "", OVERFLOW_MODEL)
"""The model that stands for every model past the cap."""

OTHER_CLASS: Final = "__other__"
"""The class that stands for every class of a model past its cap."""


class Caps:
    """The tracking caps of one engine (see the module docstring).

    Args:
        max_models: distinct model keys tracked on their own (at least 1).
        max_classes: classes tracked per model besides the allowlist (at least 1).
        max_pending: puids held in the join stores, all partitions together;
            0 means no bound.
        class_allowlist: classes always tracked (and always exported).
    """

    __slots__ = (
        "_allow",
        "_classes",
        "_models",
        "_warned_classes",
        "_warned_models",
        "evicted",
        "folded_classes",
        "max_classes",
        "max_models",
        "max_pending",
    )

    def __init__(
        self,
        max_models: int = 1000,
        max_classes: int = 50,
        max_pending: int = 0,
        class_allowlist: Iterable[str] = (),
    ) -> None:
        if max_models < 1 or max_classes < 1 or max_pending < 0:
            raise ValueError("caps must be positive (max_pending: 0 for no bound)")
        self.max_models = max_models
        self.max_classes = max_classes
        self.max_pending = max_pending
        self._allow = frozenset(class_allowlist)
        self._models: set[ModelKey] = set()
        self._classes: dict[ModelKey, set[str]] = {}
        self._warned_models = False
        self._warned_classes: set[ModelKey] = set()
        self.folded_classes = 0
        """Class values folded into :data:`OTHER_CLASS` (every outcome row counts)."""
        self.evicted: Counter[str] = Counter()
        """Unjoined parts of evicted puids, per event type."""

    @property
    def tracked_models(self) -> int:
        """Model keys tracked on their own now."""
        return len(self._models)

    def admit(self, keys: Iterable[ModelKey]) -> None:
        """Track ``keys`` whatever the cap (a restored snapshot already holds them)."""
        self._models.update(k for k in keys if k != OVERFLOW_KEY)

    def model(self, key: ModelKey) -> ModelKey:
        """``key`` if it is (or can be) tracked on its own, else :data:`OVERFLOW_KEY`."""
        models = self._models
        if key in models or key == OVERFLOW_KEY:
            return key
        if len(models) < self.max_models:
            models.add(key)
            return key
        if not self._warned_models:
            self._warned_models = True
            _log.warning(
                "more than %d models: %s and later ones are tracked as model=%s "
                "(raise --max-models to track more)",
                self.max_models,
                key,
                OVERFLOW_MODEL,
            )
        return OVERFLOW_KEY

    def fold_classes(self, key: ModelKey, outcome: Outcome) -> None:
        """Fold the outcome's classes past ``key``'s cap into :data:`OTHER_CLASS`, in place."""
        tracked = self._classes.get(key)
        if tracked is None:
            tracked = self._classes[key] = set()
        truth = outcome.truth
        if truth is not None and not self._keeps(key, tracked, truth):
            outcome.truth = OTHER_CLASS
        if not self._keeps(key, tracked, outcome.predicted):
            outcome.predicted = OTHER_CLASS

    def _keeps(self, key: ModelKey, tracked: set[str], label: str) -> bool:
        if label in tracked or label in self._allow or label == OTHER_CLASS:
            return True
        if len(tracked) < self.max_classes:
            tracked.add(label)
            return True
        self.folded_classes += 1
        if key not in self._warned_classes and len(self._warned_classes) < self.max_models + 1:
            self._warned_classes.add(key)
            _log.warning(
                "model %s has more than %d classes: %r and later ones are tracked as %s "
                "(raise --max-classes to track more)",
                key,
                self.max_classes,
                label,
                OTHER_CLASS,
            )
        return False

    def track_classes(self, key: ModelKey, labels: Iterable[str]) -> None:
        """Track ``labels`` for ``key`` whatever the cap (a restored snapshot holds them)."""
        tracked = self._classes.setdefault(key, set())
        allow = self._allow
        # Allowlisted classes are kept without taking a place, as live (_keeps).
        tracked.update(label for label in labels if label != OTHER_CLASS and label not in allow)
