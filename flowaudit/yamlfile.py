"""YAML read with line numbers, so that an error in a table or a site file names its line.

``read_yaml`` returns plain Python data plus ``lines``: the 1-based line of every mapping key
and sequence item, by its path (``("roles", "sql-server", 1)``). Only the safe YAML subset is
accepted (no tags, no aliases to objects): the files are data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from flowaudit.errors import InputError

Path_ = tuple[Any, ...]


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
        where = f"{self.name}:{line}" if line else self.name
        key = ".".join(str(part) for part in path)
        return InputError(f"{where}: {key}: {message}" if key else f"{where}: {message}")


def _convert(node: yaml.Node, path: Path_, lines: dict[Path_, int], name: str) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _convert(key_node, (*path, "<key>"), {}, name)
            if isinstance(key, (dict, list)):
                raise InputError(f"{name}:{key_node.start_mark.line + 1}: a key must be a scalar")
            if key in out:
                raise InputError(f"{name}:{key_node.start_mark.line + 1}: {key}: given twice")
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, (*path, key), lines, name)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(item, (*path, index), lines, name) for index, item in enumerate(node.value)
        ]
    if node.tag == "tag:yaml.org,2002:merge":
        raise InputError(f"{name}:{node.start_mark.line + 1}: merge keys (<<) are not supported")
    # A scalar: let the safe constructor type it (int, float, bool, null, str).
    try:
        return yaml.SafeLoader("").construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        key = ".".join(str(part) for part in path)
        where = f"{name}:{node.start_mark.line + 1}: " + (f"{key}: " if key else "")
        raise InputError(f"{where}{problem}") from None


def read_yaml(text: str | bytes, name: str) -> YamlDocument:
    """Parse one YAML document; a syntax error is one line naming file and line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise InputError(f"{name}{line}: not valid YAML ({exc.problem or exc})") from None
    except yaml.YAMLError as exc:  # e.g. bytes that are not UTF-8: one line of it
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{name}: not valid YAML ({first})") from None
    lines: dict[Path_, int] = {}
    if node is None:
        return YamlDocument(name, None, lines)
    return YamlDocument(name, _convert(node, (), lines, name), lines)
