"""Which search server answers, and what it speaks.

Detected once at start (:func:`feedback_stream.es.connect`) from ``GET /``
(the node's own ``_nodes/_local`` where a minimal distribution has no root
endpoint), then every reader and writer asks the :class:`ServerInfo`
rather than guessing:

=========================  =============  ==============================  ==============
server                     paging         client (media type)             index template
=========================  =============  ==============================  ==============
Elasticsearch 7.0 – 7.7    scroll         opensearch-py (application/json)  legacy
Elasticsearch 7.8 – 7.11   scroll         opensearch-py (application/json)  composable
Elasticsearch 7.12 – 7.17  PIT (``_pit``) opensearch-py (application/json)  composable
Elasticsearch 8.x          PIT (``_pit``) opensearch-py (application/json)  composable
Elasticsearch 9.x          PIT (``_pit``) elasticsearch 9 (compatible-with=9) composable
OpenSearch 1.x – 3.x       scroll         opensearch-py (application/json)  composable
=========================  =============  ==============================  ==============

Elasticsearch opened point-in-time search in 7.10, but the ``_shard_doc``
tiebreaker that makes ``search_after`` over a point in time total came in
7.12; before that a scroll reads the same documents in the same order.
OpenSearch has its own point-in-time API since 2.4, but no ``_shard_doc``
(2.19 answers "No mapping found for [_shard_doc]") and no implicit
tiebreaker: documents with the same ``@timestamp`` in different shards could
be skipped by ``search_after``, so the reader scrolls there, which is exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from feedback_stream.es.errors import EsUnsupportedServerError

__all__ = ["Family", "Paging", "ServerInfo", "server_from_root", "server_from_version"]


class Family(StrEnum):
    """The server's product."""

    ELASTICSEARCH = "elasticsearch"
    OPENSEARCH = "opensearch"


class Paging(StrEnum):
    """How the history reader walks an index: a point in time, or a scroll."""

    PIT = "pit"
    SCROLL = "scroll"


_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")
# The oldest of each family this package is tested against, and the first
# major it does not know.
_SUPPORTED: dict[Family, tuple[tuple[int, int], int]] = {
    Family.ELASTICSEARCH: ((7, 0), 10),
    Family.OPENSEARCH: ((1, 0), 4),
}


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A server's family and version, and what follows from them.

    Attributes:
        family: Elasticsearch or OpenSearch.
        version: ``(major, minor, patch)``.
        number: the version as the server spells it (``7.6.2``, ``9.2.0-SNAPSHOT``).
    """

    family: Family
    version: tuple[int, int, int]
    number: str

    def __str__(self) -> str:
        name = "OpenSearch" if self.family is Family.OPENSEARCH else "Elasticsearch"
        return f"{name} {self.number}"

    @property
    def paging(self) -> Paging:
        """Point in time + ``search_after`` where it gives a total order, else a scroll."""
        if self.family is Family.OPENSEARCH:
            return Paging.SCROLL
        return Paging.PIT if self.version[:2] >= (7, 12) else Paging.SCROLL

    @property
    def composable_templates(self) -> bool:
        """Whether ``_index_template`` exists (Elasticsearch 7.8+, every OpenSearch)."""
        return self.family is Family.OPENSEARCH or self.version[:2] >= (7, 8)

    @property
    def elasticsearch_client(self) -> bool:
        """Whether the ``elasticsearch`` (9.x) client speaks to it; else opensearch-py.

        The 9.x client sends ``compatible-with=9`` media types on every
        request (Elasticsearch 8 accepts only 7 and 8; 7.x and OpenSearch
        none) and refuses any server that does not say it is Elasticsearch
        (OpenSearch; Elasticsearch before 7.14). opensearch-py sends plain
        ``application/json``, which every supported server accepts.
        """
        return self.family is Family.ELASTICSEARCH and self.version[0] >= 9

    def check_supported(self) -> None:
        """Raise one clear error for a server this package cannot read or write.

        Raises:
            EsUnsupportedServerError: naming the server, its version and what is missing.
        """
        oldest, first_unknown = _SUPPORTED[self.family]
        if self.version[:2] < oldest:
            raise EsUnsupportedServerError(
                f"{self} is not supported: it lacks typeless mappings and "
                "hits.total as an object (Elasticsearch 7.0); the oldest supported are "
                "Elasticsearch 7.0 and OpenSearch 1.0"
            )
        if self.version[0] >= first_unknown:
            raise EsUnsupportedServerError(
                f"{self} is not supported yet: the newest supported majors are "
                "Elasticsearch 9 and OpenSearch 3"
            )


def server_from_version(family: Family | str, number: str) -> ServerInfo:
    """A :class:`ServerInfo` from a family and a version string.

    Raises:
        EsUnsupportedServerError: the version cannot be read.
    """
    found = _VERSION.match(number)
    if found is None:
        raise EsUnsupportedServerError(f"cannot read the server version {number!r}")
    major, minor, patch = (int(part) if part else 0 for part in found.groups())
    return ServerInfo(Family(family), (major, minor, patch), number)


def server_from_root(body: dict[str, Any]) -> ServerInfo:
    """A :class:`ServerInfo` from the answer of ``GET /``.

    OpenSearch says ``"distribution": "opensearch"`` in ``version``;
    Elasticsearch has no distribution (or ``build_flavor``).
    """
    version = body.get("version")
    if not isinstance(version, dict) or "number" not in version:
        raise EsUnsupportedServerError(
            f"the server's root answer has no version: {str(body)[:200]}"
        )
    family = (
        Family.OPENSEARCH if version.get("distribution") == "opensearch" else Family.ELASTICSEARCH
    )
    return server_from_version(family, str(version["number"]))
