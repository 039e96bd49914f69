"""Rendering values into systemd unit files safely (pure functions, standard library).

systemd parses `Environment="NAME=value"` with C-style escapes inside the quotes and expands
`%` specifiers everywhere, so a value with a quote, backslash or percent sign must be
escaped or it silently changes (or breaks the unit). Booleans are written the way Go's
strconv.ParseBool reads them, lists as the comma-separated form Ollama expects.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class UnitValueError(ValueError):
    """A value that cannot be expressed in a unit file, with the reason."""


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
    if "\n" in text or "\x00" in text:
        raise UnitValueError(f"the value of {name} contains a newline or NUL byte")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'Environment="{name}={escaped}"'


def environment_lines(variables: dict) -> list[str]:
    """One assignment per variable whose value is not null, in name order."""
    return [
        environment_assignment(name, value)
        for name, value in sorted(variables.items())
        if value is not None and value not in ([], "")
    ]
