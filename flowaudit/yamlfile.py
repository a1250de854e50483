"""YAML read with line numbers, so that an error in a table or a site file names its line.

``read_yaml`` returns plain Python data plus ``lines``: the 1-based line of every mapping key
and sequence item, by its path (``("roles", "sql-server", 1)``). Only the safe YAML subset is
accepted: the files are data, so tags beyond the safe ones, merge keys (``<<``), anchors
(``&name``) and aliases (``*name``) are refused, as are files larger than ``MAX_YAML_BYTES``
and collections nested deeper than ``MAX_YAML_DEPTH`` (``docs/limits.md``).

The document is built from libyaml's event stream (PyYAML's pure-Python parser where libyaml
is absent) with one loop and an explicit stack: no node tree, no recursion, every scalar typed
by one resolver and one constructor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from flowaudit.errors import InputError

Path_ = tuple[Any, ...]

# A site or accept file of 16 MiB holds some 800,000 addresses; a real one holds thousands.
MAX_YAML_BYTES = 16 * 1024 * 1024
# Site, accept and signature files nest four or five levels; 64 is far beyond any of them.
MAX_YAML_DEPTH = 64

_Loader: Any = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def shown(part: Any) -> str:
    """A key or value as an error line shows it: as it is when printable, else repr-like
    (``'\\x1b[31m'``), so that no control character from a file reaches the terminal."""
    text = str(part)
    return text if text.isprintable() else repr(text)


def key_path(path: Path_) -> str:
    """``roles.client.1``: the parts of a path joined by dots, each shown safely."""
    return ".".join(shown(part) for part in path)


@dataclass
class YamlDocument:
    """The data of one YAML file and where each part of it sits."""

    name: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, path: Path_) -> int | None:
        """The line of ``path``, or of its nearest parent that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def error(self, path: Path_, message: str) -> InputError:
        """One line naming the file, the line and the key path: ``site.yaml:7: roles.x: ...``."""
        line = self.line(path)
        where = f"{shown(self.name)}:{line}" if line else shown(self.name)
        key = key_path(path)
        return InputError(f"{where}: {key}: {message}" if key else f"{where}: {message}")


def read_bounded(path: str | Path, what: str, limit: int) -> bytes:
    """The bytes of an input file; a file that cannot be read, or holds more than ``limit``
    bytes, is one error naming it (a pipe is read up to the limit, never further)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise InputError(f"{shown(path)}: cannot read the {what} ({exc.strerror})") from None
    if len(raw) > limit:
        raise InputError(f"{shown(path)}: the {what} is larger than {size_text(limit)} (the limit)")
    return raw


def size_text(limit: int) -> str:
    """A limit as people write it: ``16 MiB``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= scale and limit % scale == 0:
            return f"{limit // scale} {unit}"
    return f"{limit} bytes"


class _Builder:
    """Data and lines from YAML events: one pass, an explicit stack of open collections."""

    def __init__(self, name: str, max_depth: int) -> None:
        self.name = name
        self.max_depth = max_depth
        self.lines: dict[Path_, int] = {}
        self.implicit = Resolver.yaml_implicit_resolvers  # first character -> (tag, regexp)
        self.constructor = SafeConstructor()

    def fail(self, mark: Any, message: str) -> InputError:
        line = f":{mark.line + 1}" if mark is not None else ""
        return InputError(f"{shown(self.name)}{line}: {message}")

    def scalar(self, event: yaml.ScalarEvent, path: Path_) -> Any:
        """The typed value of a scalar, as PyYAML's safe loader types it."""
        tag = event.tag
        value = event.value
        if tag is None or tag == "!":
            if not event.implicit[0]:  # quoted or block text
                return value
            tag = _STR_TAG
            if "/" in value or "::" in value or value.count(".") > 1:
                return value  # an address or network: no implicit type of YAML 1.1 matches
            for candidate, pattern in self.implicit.get(value[:1], ()):
                if pattern.match(value):
                    tag = candidate
                    break
        if tag == _STR_TAG:
            return value
        if tag == _MERGE_TAG:
            raise self.fail(event.start_mark, "merge keys (<<) are not supported")
        start: Any = event.start_mark  # (libyaml's marks are of a kind of their own)
        end: Any = event.end_mark
        node = yaml.ScalarNode(tag, value, start, end, event.style)
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        except (IndexError, KeyError, AttributeError):  # PyYAML's, on an empty `!!int`
            problem = f"{value!r} is not a valid {tag}"
        finally:
            self.constructor.constructed_objects.pop(node, None)
        key = key_path(path)
        raise self.fail(event.start_mark, (f"{key}: " if key else "") + shown(problem))

    def build(self, events: Any) -> Any:
        lines = self.lines
        # The open collections, innermost last: [container, its path, the key awaiting a
        # value (mappings; ``waiting`` while the next scalar is a key)].
        stack: list[list[Any]] = []
        root: Any = None
        documents = 0
        waiting = object()
        parent: list[Any] | None
        container: Any
        for event in events:
            kind = type(event)
            if kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                done = stack.pop()[0]
                if not stack:
                    root = done
                continue
            if kind is yaml.ScalarEvent or kind is _MAPPING or kind is _SEQUENCE:
                pass
            elif kind is yaml.AliasEvent:
                raise self.fail(event.start_mark, f"aliases (*{event.anchor}) are not supported")
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise self.fail(
                        event.start_mark, "not valid YAML (expected one document, found another)"
                    )
                continue
            else:
                continue  # the stream's start and end, a document's end
            if event.anchor is not None:
                raise self.fail(event.start_mark, f"anchors (&{event.anchor}) are not supported")
            if stack:
                parent = stack[-1]
                container = parent[0]
                if type(container) is dict:
                    if parent[2] is waiting:  # a mapping key
                        if kind is not yaml.ScalarEvent:
                            raise self.fail(event.start_mark, "a key must be a scalar")
                        key = self.scalar(event, (*parent[1], "<key>"))
                        if key in container:
                            raise self.fail(event.start_mark, f"{shown(key)}: given twice")
                        lines[(*parent[1], key)] = event.start_mark.line + 1
                        parent[2] = key
                        continue
                    path: Path_ = (*parent[1], parent[2])
                else:
                    path = (*parent[1], len(container))
            else:
                parent = None
                container = None
                path = ()
            if path not in lines:
                lines[path] = event.start_mark.line + 1
            if kind is yaml.ScalarEvent:
                value: Any = self.scalar(event, path)
            elif len(stack) >= self.max_depth:
                raise self.fail(
                    event.start_mark, f"nested deeper than {self.max_depth} levels (the limit)"
                )
            else:
                value = {} if kind is _MAPPING else []
            if parent is None:
                root = value
            elif type(container) is dict:
                container[parent[2]] = value
                parent[2] = waiting
            else:
                container.append(value)
            if kind is not yaml.ScalarEvent:
                stack.append([value, path, waiting])
        return root


_MAPPING = yaml.MappingStartEvent
_SEQUENCE = yaml.SequenceStartEvent


def read_yaml(
    text: str | bytes,
    name: str,
    *,
    max_bytes: int = MAX_YAML_BYTES,
    max_depth: int = MAX_YAML_DEPTH,
) -> YamlDocument:
    """Parse one YAML document; a syntax error, a feature of YAML beyond data, a file larger
    than ``max_bytes`` or deeper than ``max_depth`` is one line naming file and line."""
    size = len(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    if size > max_bytes:
        raise InputError(
            f"{shown(name)}: the YAML file is larger than {size_text(max_bytes)} (the limit)"
        )
    builder = _Builder(name, max_depth)
    try:
        data = builder.build(yaml.parse(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = shown(exc.problem or str(exc).splitlines()[0])
        raise InputError(f"{shown(name)}{line}: not valid YAML ({problem})") from None
    except yaml.YAMLError as exc:  # e.g. bytes that are not UTF-8: one line of it
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{shown(name)}: not valid YAML ({shown(first)})") from None
    return YamlDocument(name, data, builder.lines)
