"""Secrets from files: every secret setting also has a ``*_FILE`` spelling.

A password given as a flag is visible to every local user in ``ps``; one in
an environment variable is visible in ``/proc`` and in manifests. Docker and
Kubernetes mount secrets as files, so every :class:`~pydantic.SecretStr`
setting ``X`` can also be read from the file that ``X_FILE`` names::

    FEEDBACK_STREAM_KAFKA_SASL_PASSWORD_FILE=/run/secrets/kafka-password
    --kafka-sasl-password-file /run/secrets/kafka-password
    FEEDBACK_STREAM_ES__PASSWORD_FILE=/run/secrets/es-password

The file's content is the secret, without a trailing newline. A value given
directly wins over a file given in the same place (flag or environment);
flags win over the environment. A secret given as a flag is accepted with
a warning.
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

__all__ = [
    "SecretField",
    "SecretFilesSource",
    "WithoutFileNames",
    "apply_file_flags",
    "read_secret_file",
    "secret_fields",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SecretField:
    """One secret setting: where it sits in the model and how it is spelt."""

    path: tuple[str, ...]
    """Field names from the root settings model down (``("es", "password")``)."""
    env: str
    """Its environment variable (``FEEDBACK_STREAM_ES__PASSWORD``)."""
    flag: str
    """Its flag (``--es-password``)."""
    description: str

    @property
    def file_env(self) -> str:
        return self.env + "_FILE"

    @property
    def file_flag(self) -> str:
        return self.flag + "-file"

    @property
    def dest(self) -> str:
        """The argparse destination of its ``-file`` flag."""
        return "fsfile__" + "__".join(self.path)


def _is_secret(annotation: object) -> bool:
    if annotation is SecretStr:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return SecretStr in get_args(annotation)
    return False


def _nested(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def secret_fields(
    model: type[BaseModel], env: str, flag: str = "--", path: tuple[str, ...] = ()
) -> Iterator[SecretField]:
    """Every secret of ``model`` and its nested models (``env`` is the variable prefix)."""
    for name, field in model.model_fields.items():
        nested = _nested(field.annotation)
        if nested is not None:
            yield from secret_fields(
                nested, f"{env}{name}__", f"{flag}{name.replace('_', '-')}-", (*path, name)
            )
        elif _is_secret(field.annotation):
            yield SecretField(
                (*path, name),
                (env + name).upper(),
                flag + name.replace("_", "-"),
                field.description or name,
            )


def read_secret_file(path: str, where: str) -> str:
    """The secret in the file at ``path``, without its trailing newline.

    Raises:
        ValueError: the file cannot be read (named with ``where`` it was given).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: cannot read the secret file {path!r}: {exc}") from None
    return text.rstrip("\r\n")


def _set(data: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    for name in path[:-1]:
        inner = data.get(name)
        if not isinstance(inner, dict):
            inner = data[name] = {} if inner is None else dict(inner)
        data = inner
    data.setdefault(path[-1], value)


def _has(data: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    for name in path[:-1]:
        inner = data.get(name)
        if not isinstance(inner, Mapping):
            return False
        data = inner
    return data.get(path[-1]) not in (None, "")


class SecretFilesSource(PydanticBaseSettingsSource):
    """A settings source: ``<SECRET>_FILE`` environment variables, read from their files.

    Placed after the environment source, so a secret given directly in the
    environment wins over its file.
    """

    def __init__(self, settings_cls: type[BaseSettings], env_prefix: str) -> None:
        super().__init__(settings_cls)
        self._env_prefix = env_prefix

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is done in __call__

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        environ = {name.upper(): value for name, value in os.environ.items()}
        for secret in secret_fields(self.settings_cls, self._env_prefix):
            path = environ.get(secret.file_env)
            if path:
                _set(out, secret.path, read_secret_file(path, secret.file_env))
        return out


class WithoutFileNames(PydanticBaseSettingsSource):
    """Another source (the environment) without the ``<SECRET>_FILE`` names in it.

    pydantic-settings reads ``FEEDBACK_STREAM_ES__PASSWORD_FILE`` as a field
    ``password_file`` of the nested model, which refuses unknown fields;
    :class:`SecretFilesSource` reads those variables instead.
    """

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._inner = inner

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        data = self._inner()
        for secret in secret_fields(self.settings_cls, ""):
            holder: Any = data
            for name in secret.path[:-1]:
                holder = holder.get(name) if isinstance(holder, dict) else None
            if isinstance(holder, dict):
                holder.pop(secret.path[-1] + "_file", None)
        return data


def apply_file_flags(
    given: Mapping[str, Any], values: dict[str, Any], secrets: list[SecretField]
) -> None:
    """Fill ``values`` (nested init kwargs) from ``--x-file`` flags; warn on secret flags.

    A secret given directly as a flag keeps its value (and draws the warning).
    """
    for secret in secrets:
        if _has(values, secret.path):
            _log.warning(
                "%s given on the command line: every local user can read it (ps); "
                "use %s or %s instead",
                secret.flag,
                secret.file_flag,
                secret.file_env,
            )
        path = given.get(secret.dest)
        if path:
            _set(values, secret.path, read_secret_file(str(path), secret.file_flag))
