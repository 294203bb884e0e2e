"""Parsing of list settings, shared by every settings model."""

from __future__ import annotations

import json


def split_commas(value: object) -> object:
    """Accept ``a,b`` as well as a JSON list, from the environment and the CLI.

    People type comma lists into Kubernetes manifests and shells; pydantic
    alone would want JSON. Anything that is not a string passes through for
    pydantic to validate.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value
