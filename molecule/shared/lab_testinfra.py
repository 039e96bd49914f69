"""pytest plugin for molecule's testinfra verifier: talk to the scenario's hosts directly.

Molecule hands testinfra its inventory, which only the (slow) ansible backend expands. With
`connection: podman` testinfra needs host names instead: take them from molecule's inventory
so every test runs once per platform through `podman exec`.
"""

from __future__ import annotations

import os

import yaml


def _hosts(group: dict) -> set[str]:
    names = set((group or {}).get("hosts") or {})
    for child in ((group or {}).get("children") or {}).values():
        names |= _hosts(child)
    return names


def pytest_configure(config) -> None:
    if config.option.connection != "podman" or config.option.hosts is not None:
        return
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory or not os.path.exists(inventory):
        return
    with open(inventory, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    names = sorted(_hosts(data.get("all", {})))
    if names:
        config.option.hosts = ",".join(names)
