"""The configuration reference, generated from the Settings definitions.

`huiyin config reference` prints it; docs/configuration.md is its output, and a test fails
when the two differ.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from config.backends import KINDS, Backend, ZeroShotVoice, backend_fields
from config.settings import ENV_PREFIX, REMOVED_SETTINGS, Settings, setting_fields

_HINTS = typing.get_type_hints(Settings)
HEADER = f"""\
# Configuration reference

Generated from `config/settings.py` by `huiyin config reference`; do not edit by hand.

Settings come from `config/settings.yaml` (or the file named by `--config` or
`HUIYIN_CONFIG`), then from environment variables, which win. In the environment a list
is written `a,b` and a mapping `name=value,name=value`. Unknown keys, `HUIYIN_*`
variables that name no setting, and wrong types stop the program with a message naming
the key and where it came from. A setting an earlier release had
({", ".join(f"`{k}`" for k in REMOVED_SETTINGS)}) is ignored with a warning that names it.

| key | type | default | environment variable | meaning |
|---|---|---|---|---|
"""


def _type_name(hint: Any) -> str:
    if isinstance(hint, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return f"{_type_name(inner)} (optional)"
    if typing.get_origin(hint) is tuple:
        return f"list of {_type_name(typing.get_args(hint)[0])}s"
    if typing.get_origin(hint) is Mapping:
        key, value = typing.get_args(hint)
        return f"mapping of {_type_name(key)} to {_type_name(value)}"
    if hint is Backend:
        return "backend"
    if hint is ZeroShotVoice:
        return "{clip, transcript}"
    return {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}[hint]


def _default(field: dataclasses.Field[Any]) -> str:
    if field.name == "models_dir":
        return "`~/.cache/huiyin/models`"
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        raise AssertionError(f"setting '{field.name}' has no default")
    if value is None or value == () or (isinstance(value, Mapping) and not value):
        return "unset"
    if isinstance(value, tuple):
        return "`" + ",".join(str(v) for v in value) + "`"
    if isinstance(value, Mapping):
        return "`" + ",".join(f"{k}={v}" for k, v in value.items()) + "`"
    return f"`{value}`"


def render_reference() -> str:
    """The Markdown reference: every key with its type, default and environment variable."""
    rows = [
        f"| `{f.name}` | {_type_name(_HINTS[f.name])} | {_default(f)} | "
        f"`{ENV_PREFIX}{f.name.upper()}` | {f.metadata['doc']} |"
        for f in setting_fields()
    ]
    backend_rows = [
        f"| `{f.name}` | {_type_name(_BACKEND_HINTS[f.name])} | "
        f"{'required' if _required(f) else _default(f)} | {f.metadata['kinds']} | "
        f"{f.metadata['doc']} |"
        for f in backend_fields()
    ]
    return (HEADER + "\n".join(rows) + "\n" + BACKENDS_HEADER + "\n".join(backend_rows) + "\n")


def _required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


_BACKEND_HINTS = typing.get_type_hints(Backend)
BACKENDS_HEADER = f"""
## Backends

Each entry of `backends` is one remote upstream, run as an engine of its own. Kinds:
{", ".join(f"`{k}`" for k in KINDS)}. Credentials are never written in the file: the
`*_env` fields name the environment variables that hold them.

| field | type | default | kinds | meaning |
|---|---|---|---|---|
"""


REFERENCE_PATH = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
