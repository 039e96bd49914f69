"""Every `| localllm.fleet.<name>` the roles, playbooks and templates use is a filter the
collection ships: a misspelt or removed filter otherwise only shows on a host, mid-run."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.controller  # the filter plugins import Ansible

ROOT = Path(__file__).resolve().parents[2]
USE = re.compile(r"\|\s*localllm\.fleet\.([a-z0-9_]+)")


def shipped_filters() -> set[str]:
    names: set[str] = set()
    for path in sorted((ROOT / "plugins" / "filter").glob("*.py")):
        module = importlib.import_module(
            f"ansible_collections.localllm.fleet.plugins.filter.{path.stem}"
        )
        names.update(module.FilterModule().filters())
    return names


def used_filters() -> dict[str, list[str]]:
    used: dict[str, list[str]] = {}
    for folder in ("roles", "playbooks", "templates"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".yml", ".yaml", ".j2") and path.is_file():
                for name in USE.findall(path.read_text(encoding="utf-8")):
                    used.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return used


def test_every_filter_the_roles_use_is_shipped():
    used = used_filters()
    assert "nvidia_driver_apt_resolution" in used  # the scan reads the role files
    missing = {name: where for name, where in used.items() if name not in shipped_filters()}
    assert missing == {}
