"""Rendering values into systemd unit files safely (pure functions, standard library).

systemd parses `Environment="NAME=value"` with C-style escapes inside the quotes and expands
`%` specifiers everywhere, so a value with a quote, backslash or percent sign must be
escaped or it silently changes (or breaks the unit). It ends a line at LF, CR and NUL
(src/basic/fileio.c, read_line_full), so none of them may reach a unit: a value holding
`\\rUser=root` would otherwise add a directive. Paths in path-list settings
(`ReadWritePaths=`) are split at whitespace and must be absolute; user and group names
follow systemd's strict rule (`valid_user_group_name`). Booleans are written the way Go's
strconv.ParseBool reads them, lists as the comma-separated form Ollama expects.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# systemd's strict user/group name (user-util.c): what useradd and every distribution accept.
_USER_OR_GROUP = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,30}$")


class UnitValueError(ValueError):
    """A value that cannot be expressed in a unit file, with the reason."""


def _forbidden_character(text: str, allow_tab: bool = True) -> str | None:
    """The first line break or control character in `text`, as U+XXXX; None when clean."""
    for ch in text:
        if ch == "\t" and allow_tab:
            continue
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return f"U+{ord(ch):04X}"
    return None


def environment_value(value: object) -> str:
    """The text a typed variable becomes in the process environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(environment_value(v) for v in value)
    if value is None:
        raise UnitValueError("null has no environment representation (leave the variable out)")
    return str(value)


def environment_assignment(name: str, value: object) -> str:
    """`Environment="NAME=value"` with quoting that systemd reads back as `value`."""
    if not _NAME.match(str(name)):
        raise UnitValueError(
            f"{name!r} is not a valid environment variable name (letters, digits, underscore; "
            "not starting with a digit)"
        )
    text = environment_value(value)
    bad = _forbidden_character(text)
    if bad:
        raise UnitValueError(
            f"the value of {name} contains a line break or control character ({bad}): systemd "
            "would end the line there and read the rest as another directive"
        )
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'Environment="{name}={escaped}"'


def environment_lines(variables: Mapping[str, Any]) -> list[str]:
    """One assignment per variable whose value is not null, in name order."""
    return [
        environment_assignment(name, value)
        for name, value in sorted(variables.items())
        if value is not None and value not in ([], "")
    ]


def unit_path(path: object, what: str = "path") -> str:
    """An absolute path as a unit file must hold it, `%` escaped; UnitValueError otherwise.

    Whitespace is refused rather than quoted: path-list settings split at it, and a path
    systemd cannot read is silently ignored (ProtectSystem=strict then makes the model store
    read-only). `.`/`..` components and `//` are refused as ambiguous; a trailing slash is
    dropped.
    """
    text = str(path) if path is not None else ""
    bad = _forbidden_character(text, allow_tab=False)
    if bad:
        raise UnitValueError(f"{what} {text!r} contains a line break or control character ({bad})")
    if any(ch.isspace() for ch in text):
        raise UnitValueError(f"{what} {text!r} contains whitespace; choose a path without it")
    if not text.startswith("/"):
        raise UnitValueError(f"{what} {text!r} must be an absolute path (starting with /)")
    if '"' in text or "'" in text:
        raise UnitValueError(f"{what} {text!r} contains a quote; choose a path without one")
    if "\\" in text:
        raise UnitValueError(f"{what} {text!r} contains a backslash; choose a path without one")
    if "//" in text:
        raise UnitValueError(f"{what} {text!r} contains '//'; write the path normalized")
    trimmed = text.rstrip("/") or "/"
    if any(part in (".", "..") for part in trimmed.split("/")):
        raise UnitValueError(f"{what} {text!r} has a '.' or '..' component; write it resolved")
    return trimmed.replace("%", "%%")


def unit_name(name: object, what: str = "name") -> str:
    """A user or group name as systemd's strict rule accepts it (no escaping is needed)."""
    text = str(name) if name is not None else ""
    if not _USER_OR_GROUP.match(text) or text.isdigit():
        raise UnitValueError(
            f"{what} {text!r} is not a valid user or group name for systemd (a letter or "
            "underscore, then letters, digits, '_' or '-', at most 31 characters)"
        )
    return text


def problems(
    paths: Mapping[str, Any] | None = None,
    names: Mapping[str, Any] | None = None,
    environment: Mapping[str, Any] | None = None,
) -> list[str]:
    """Every value that cannot go into a unit, as `<variable>: <reason>` (for a preflight)."""
    found: list[str] = []
    for variable, value in (paths or {}).items():
        try:
            unit_path(value, variable)
        except UnitValueError as err:
            found.append(f"{variable}: {err}")
    for variable, value in (names or {}).items():
        try:
            unit_name(value, variable)
        except UnitValueError as err:
            found.append(f"{variable}: {err}")
    for variable, value in sorted((environment or {}).items()):
        if value is None or value in ([], ""):
            continue
        try:
            environment_assignment(variable, value)
        except UnitValueError as err:
            found.append(f"{variable}: {err}")
    return found
