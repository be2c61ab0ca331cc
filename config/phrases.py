"""Phrase files: named customer-service phrases to pre-warm, validated with line numbers.

    defaults:            # optional; every phrase inherits these
      voice: baker
      style: neutral
      speed: 1.0
      formats: [ulaw, wav16]
    phrases:
      - id: greeting
        text: 您好，欢迎致电客户服务中心。
        tags: [greeting]
        style: cheerful   # any default may be overridden per phrase

Anchors and aliases (&name, *name) are refused: each value is written out where it is used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from config.settings import text_limit

PHRASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
# Bounds on one document, checked from the parser's events before anything is composed, so
# that a hostile body or file costs a bounded time and memory (a composed node takes about
# 750 bytes). A phrase file nests
# five levels deep and a phrase takes about ten nodes and a hundred characters, so these allow
# some twenty thousand phrases in one file.
MAX_DOCUMENT_CHARS = 2 << 20
MAX_NODES = 250_000
MAX_DEPTH = 20
_SETTINGS = ("voice", "style", "speed", "pitch", "volume", "formats")
_PHRASE_KEYS = {"id", "text", "tags", *_SETTINGS}


class PhraseFileError(ValueError):
    """A phrase file is malformed; the message names the file, the line and the field."""


@dataclass(frozen=True)
class PhraseSpec:
    """One phrase to pre-warm, with its settings resolved against the file's defaults."""

    id: str
    text: str
    voice: str | None
    style: str | None
    speed: float
    pitch: float
    volume: float
    formats: tuple[str, ...]
    tags: tuple[str, ...]
    source: str
    line: int

    @property
    def where(self) -> str:
        """source:line, for messages."""
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class _Node:
    value: Any
    line: int


# libyaml's parser and composer when PyYAML was built with it (its wheels are): some ten
# times quicker than the pure-Python ones on a large file. Both give the same nodes and marks.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_COLLECTION_START = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_COLLECTION_END = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _screen(text: str, source: str) -> None:
    """Refuse anchors, aliases, deep nesting and too many nodes from the parser's events,
    before anything is composed: an alias is never expanded, so a few hundred bytes cannot
    stand for billions of nodes, and the parser stops at the first level too deep."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, _COLLECTION_END):
            depth -= 1
            continue
        if not isinstance(event, (yaml.NodeEvent, *_COLLECTION_START)):
            continue  # stream and document events
        line = event.start_mark.line + 1 if event.start_mark is not None else 1
        if isinstance(event, yaml.AliasEvent):
            raise _fail(source, line, "aliases (*name) are not allowed; write the value out")
        if event.anchor is not None:
            raise _fail(source, line, "anchors (&name) and aliases (*name) are not allowed; "
                                      "write the value out")
        if depth >= MAX_DEPTH:
            raise _fail(source, line, f"nested deeper than {MAX_DEPTH} levels")
        nodes += 1
        if nodes > MAX_NODES:
            raise _fail(source, line, f"more than {MAX_NODES} values; split it into several "
                                      "phrase files")
        if isinstance(event, _COLLECTION_START):
            depth += 1


def _plain(node: yaml.Node, loader: yaml.SafeLoader, source: str) -> _Node:
    """A composed YAML node as Python values, keeping each node's line."""
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, _Node] = {}
        for key_node, value_node in node.value:
            # Keys are plain scalars here; anything else shows up as an unknown key.
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.tag)
            out[str(key)] = _plain(value_node, loader, source)
        return _Node(out, line)
    if isinstance(node, yaml.SequenceNode):
        return _Node([_plain(v, loader, source) for v in node.value], line)
    # Scalars through the safe constructor, so 1.0, true and null get their types. It fails in
    # many ways (KeyError, AttributeError, ...) on an explicit tag it cannot honour, such as
    # !!python/name:x or !!bool maybe: each is the file's mistake, not ours.
    try:
        return _Node(loader.construct_object(node, deep=True), line)
    except Exception:
        raise _fail(source, line, f"cannot read {str(node.value)[:40]!r} as {node.tag}") from None


def _fail(source: str, line: int, message: str) -> PhraseFileError:
    return PhraseFileError(f"{source}:{line}: {message}")


def _compose(text: str, source: str, max_chars: int = MAX_DOCUMENT_CHARS) -> yaml.Node | None:
    """The document's node tree, refused with source:line if it is too large or hostile."""
    if len(text) > max_chars:
        raise _fail(source, 1, f"longer than {max_chars} characters; split it into "
                               "several phrase files")
    try:
        _screen(text, source)
        node: yaml.Node | None = yaml.compose(text, Loader=_LOADER)
        return node
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise _fail(source, line, f"not valid YAML: {problem}") from None


def _parsed(document: yaml.Node, source: str) -> _Node:
    loader = yaml.SafeLoader("")
    try:
        return _plain(document, loader, source)
    finally:
        loader.dispose()


def _number(source: str, node: _Node, name: str) -> float:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(source, node.line, f"'{name}' must be a number, got {value!r}")
    return float(value)


def _string(source: str, node: _Node, name: str) -> str:
    if not isinstance(node.value, str) or not node.value.strip():
        raise _fail(source, node.line, f"'{name}' must be a non-empty string")
    return node.value


def _strings(source: str, node: _Node, name: str) -> tuple[str, ...]:
    items = node.value if isinstance(node.value, list) else [node]
    out = []
    for item in items:
        out.append(_string(source, item if isinstance(item, _Node) else node, name))
    return tuple(out)


def _settings(
    source: str, fields: Mapping[str, _Node], base: Mapping[str, Any], formats: Sequence[str]
) -> dict[str, Any]:
    values = dict(base)
    for name in _SETTINGS:
        node = fields.get(name)
        if node is None:
            continue
        if name in ("speed", "pitch", "volume"):
            values[name] = _number(source, node, name)
        elif name == "formats":
            chosen = _strings(source, node, name)
            for fmt in chosen:
                if fmt not in formats:
                    raise _fail(source, node.line,
                                f"'formats': unknown format '{fmt}'; known: {', '.join(formats)}")
            values[name] = chosen
        else:
            values[name] = _string(source, node, name)
    return values


def parse_phrases(
    text: str, source: str, *, formats: Sequence[str], max_text_length: int = 1024,
) -> tuple[PhraseSpec, ...]:
    """Parse phrase YAML; `formats` are the known format names. Errors name source:line.

    Anchors and aliases are refused, as are documents nested deeper than MAX_DEPTH or longer
    than MAX_DOCUMENT_CHARS.
    """
    return _parse(text, source, formats=formats, max_text_length=max_text_length,
                  max_chars=MAX_DOCUMENT_CHARS)


def _parse(
    text: str, source: str, *, formats: Sequence[str], max_text_length: int, max_chars: int,
) -> tuple[PhraseSpec, ...]:
    document = _compose(text, source, max_chars)
    if document is None:
        raise _fail(source, 1, "the file is empty; it needs a 'phrases' list")
    root = _parsed(document, source)
    if not isinstance(root.value, dict):
        raise _fail(source, root.line, "the top level must be a mapping with 'phrases'")
    for key in root.value:
        if key not in ("defaults", "phrases"):
            raise _fail(source, root.value[key].line, f"unknown key '{key}'; use defaults and phrases")
    base: dict[str, Any] = {"voice": None, "style": None, "speed": 1.0, "pitch": 1.0,
                            "volume": 1.0, "formats": ("wav",)}
    defaults = root.value.get("defaults")
    if defaults is not None:
        if not isinstance(defaults.value, dict):
            raise _fail(source, defaults.line, "'defaults' must be a mapping")
        for key, node in defaults.value.items():
            if key not in _SETTINGS:
                raise _fail(source, node.line, f"'defaults': unknown key '{key}'")
        base = _settings(source, defaults.value, base, formats)
    phrases = root.value.get("phrases")
    if phrases is None or not isinstance(phrases.value, list):
        raise _fail(source, phrases.line if phrases else root.line, "'phrases' must be a list")
    specs: list[PhraseSpec] = []
    seen: dict[str, int] = {}
    for item in phrases.value:
        if not isinstance(item.value, dict):
            raise _fail(source, item.line, "each phrase must be a mapping with id and text")
        fields: dict[str, _Node] = item.value
        for key, node in fields.items():
            if key not in _PHRASE_KEYS:
                raise _fail(source, node.line, f"unknown key '{key}' in a phrase")
        for required in ("id", "text"):
            if required not in fields:
                raise _fail(source, item.line, f"a phrase needs '{required}'")
        phrase_id = fields["id"].value
        if not isinstance(phrase_id, str | int) or not PHRASE_ID.fullmatch(str(phrase_id)):
            raise _fail(source, fields["id"].line,
                        f"'id' must be letters, digits, '.', '_' or '-' (at most 64), got {phrase_id!r}")
        phrase_id = str(phrase_id)
        if phrase_id in seen:
            raise _fail(source, fields["id"].line,
                        f"'id' {phrase_id} is used twice (first at line {seen[phrase_id]})")
        seen[phrase_id] = fields["id"].line
        text_value = _string(source, fields["text"], "text")
        if len(text_value) > text_limit(text_value, max_text_length):
            raise _fail(source, fields["text"].line,
                        f"'text' is longer than {text_limit(text_value, max_text_length)} "
                        "characters")
        values = _settings(source, fields, base, formats)
        tags = _strings(source, fields["tags"], "tags") if "tags" in fields else ()
        specs.append(PhraseSpec(
            id=phrase_id, text=text_value, voice=values["voice"], style=values["style"],
            speed=values["speed"], pitch=values["pitch"], volume=values["volume"],
            formats=tuple(values["formats"]), tags=tags, source=source, line=item.line,
        ))
    return tuple(specs)


def _json_within(value: Any, source: str) -> None:
    """Refuse decoded JSON nested deeper than MAX_DEPTH or with more than MAX_NODES values,
    before any of it is converted (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH:
            raise _fail(source, 1, f"nested deeper than {MAX_DEPTH} levels")
        if nodes > MAX_NODES:
            raise _fail(source, 1, f"more than {MAX_NODES} values; split it into several lists")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def parse_phrase_json(
    text: str, source: str, *, formats: Sequence[str], max_text_length: int = 1024,
) -> tuple[PhraseSpec, ...]:
    """Parse a phrase list sent as JSON: the YAML shape, or a bare list of phrases.

    Malformed JSON raises json.JSONDecodeError; every other problem is a PhraseFileError.
    """
    if len(text) > MAX_DOCUMENT_CHARS:
        raise _fail(source, 1, f"longer than {MAX_DOCUMENT_CHARS} characters")
    try:
        data: Any = json.loads(text)
    except RecursionError:
        raise _fail(source, 1, f"nested deeper than {MAX_DEPTH} levels") from None
    _json_within(data, source)
    if isinstance(data, list):
        data = {"phrases": data}
    # One parser for both: the YAML form of the same data gets the same checks and messages.
    # The size limit was applied to the JSON as sent; its YAML copy may be somewhat longer.
    text = yaml.dump(data, Dumper=_DUMPER, allow_unicode=True, sort_keys=False)
    return _parse(text, source, formats=formats, max_text_length=max_text_length,
                  max_chars=4 * MAX_DOCUMENT_CHARS)


def load_phrase_files(
    paths: Sequence[Path], *, formats: Sequence[str], max_text_length: int = 1024,
) -> tuple[PhraseSpec, ...]:
    """Every phrase of several files; an id may appear in only one of them."""
    specs: list[PhraseSpec] = []
    where: dict[str, str] = {}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PhraseFileError(f"{path}: cannot read phrase file: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise PhraseFileError(f"{path}: not UTF-8 text") from None
        for spec in parse_phrases(text, str(path), formats=formats, max_text_length=max_text_length):
            if spec.id in where:
                raise PhraseFileError(f"{spec.where}: 'id' {spec.id} is also defined at {where[spec.id]}")
            where[spec.id] = spec.where
            specs.append(spec)
    return tuple(specs)
