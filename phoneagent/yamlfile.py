"""Reading a YAML config file (agent files, the service config) into a validated pydantic model,
with one error format: the file, the line or the field, and what is wrong, all problems at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigFileError(ValueError):
    """A config file that cannot be used; the message names the file and the fields."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (PyYAML keeps the last one silently: a second
    `tools:` would drop the first list without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def where(loc: tuple[Any, ...]) -> str:
    """pydantic's error location as a field path: tools[0].name."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def read_model(path: Path, model: type[M], what: str, *, empty_ok: bool = False) -> M:
    """`path` parsed (safely, no duplicate keys) and validated as `model`; ConfigFileError
    otherwise. `what` names the kind of file in the messages."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigFileError(f"{path}:{at} not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if raw is None and empty_ok:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigFileError(f"{path}: {what} is a mapping of fields, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "\n".join(f"  {where(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigFileError(f"{path}: {exc.error_count()} problem(s):\n{problems}") from None
