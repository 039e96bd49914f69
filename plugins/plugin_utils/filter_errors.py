"""Expose pure module_utils functions as Jinja filters with operator-readable errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError


def as_filter(function: Callable[..., Any], errors: type[Exception] | tuple[type[Exception], ...]):
    """`function`, raising AnsibleFilterError (same message) for the given error types."""

    @functools.wraps(function)
    def filter_function(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except errors as exc:
            raise AnsibleFilterError(str(exc)) from exc

    return filter_function
