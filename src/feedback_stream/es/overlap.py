"""Drop live events that the history bootstrap already loaded (no I/O, no clock).

The request logger does not store a CloudEvent's ``id``, and Seldon's direct
Kafka logging has none, so a part read from Elasticsearch and the same part
read again from the live topic have different identities and the join store
cannot see that they are one event. It would also forget the history part
once its puid expires, while the topic can replay it for as long as its
retention lasts. This filter remembers a fingerprint of each history part
and answers, for a live event, whether it is one of them:

* a request or response is a duplicate when history holds one of the same
  (puid, model key): a prediction is made once;
* a feedback is a duplicate when history holds a feedback of the same puid
  whose model key agrees on every attribute both name (an empty
  ``predictor`` / ``model`` names none: KServe's feedback lands in a
  document without the ``component``), with the same truth classes and
  reward. A live feedback that differs is a later amendment (the document
  holds the last feedback merged over earlier ones) and goes through.

Only parts newer than ``keep_after`` are remembered (older ones cannot come
back: the topic's retention has dropped them), and :meth:`expire` forgets
everything once the live stream is past the overlap.
"""

from __future__ import annotations

from feedback_stream.events import Event, EventKind, ModelKey

__all__ = ["HistoryOverlap"]

_Fingerprint = tuple[ModelKey, tuple[str, ...] | None, float | None]


class HistoryOverlap:
    """Fingerprints of the history's events, to recognise their live repeats.

    Args:
        keep_after: remember only parts whose event time is at or after this
            (seconds since the epoch); ``None``: remember all.
        forget_after: :meth:`expire` clears everything once its ``now`` is
            past this; ``None``: never.
    """

    def __init__(self, keep_after: float | None = None, forget_after: float | None = None) -> None:
        self.keep_after = keep_after
        self.forget_after = forget_after
        self.dropped = 0
        self._parts: dict[tuple[str, EventKind], list[_Fingerprint]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def record(self, event: Event) -> None:
        """Remember a part loaded from history."""
        if self.keep_after is not None and event.time < self.keep_after:
            return
        fingerprint = (event.key, event.classes, event.reward)
        known = self._parts.setdefault((event.puid, event.kind), [])
        if fingerprint not in known:
            known.append(fingerprint)
            self._size += 1

    def is_duplicate(self, event: Event) -> bool:
        """Whether a live event repeats a part that history loaded; counts it if so."""
        known = self._parts.get((event.puid, event.kind))
        if not known:
            return False
        if event.kind is EventKind.FEEDBACK:
            hit = any(
                _named_match(event.key, key) and classes == event.classes and reward == event.reward
                for key, classes, reward in known
            )
        else:
            hit = any(key == event.key for key, _, _ in known)
        if hit:
            self.dropped += 1
        return hit

    def expire(self, now: float) -> bool:
        """Forget every fingerprint once ``now`` is past ``forget_after``; True if it did."""
        if self.forget_after is None or now <= self.forget_after or not self._parts:
            return False
        self._parts.clear()
        self._size = 0
        return True


def _named_match(live: ModelKey, stored: ModelKey) -> bool:
    """The two feedback keys agree on every attribute that both name."""
    return all(
        not a or not b or a == b
        for a, b in (
            (live.namespace, stored.namespace),
            (live.deployment, stored.deployment),
            (live.predictor, stored.predictor),
            (live.model, stored.model),
        )
    )
