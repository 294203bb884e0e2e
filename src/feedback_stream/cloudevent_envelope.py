"""The pydantic model of a structured-mode CloudEvent envelope (JSON event format, v1.0).

:mod:`feedback_stream.decode` reads well-formed envelopes by hand and runs
this model only to word the error of one that is not. It lives in a module
of its own because the decoder is compiled (mypyc), and a pydantic model is
a plain Python class that stays interpreted.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["StructuredEvent"]


class StructuredEvent(BaseModel):
    """The envelope of a structured-mode CloudEvent (JSON event format, v1.0)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: str
    type: str
    id: str | None = None
    source: str | None = None
    time: str | None = None
    datacontenttype: str | None = None
    data: Any = None
    data_base64: str | None = None
