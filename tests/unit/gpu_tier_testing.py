"""The gpu_tier inventory plugin as Ansible loads it, and a prober that answers from fixtures.

Shared by the plugin's tests and by the tests that build an inventory with it (the example
inventory's plan) without touching any host.
"""

from __future__ import annotations

import sys
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia"
REPO = Path(__file__).resolve().parents[2]
LAB_PROFILES = ("h100x8", "rtx4090", "rtx4090x2", "t4", "cpu", "broken", "nodriver")


def _install_collection_loader():
    """The plugin as Ansible loads it (collection loader, documented options).

    Other test modules import `ansible_collections.localllm.fleet` as a plain namespace
    package; the collection loader refuses a package it did not load, so those entries are
    dropped before it is installed.
    """
    from ansible.plugins.loader import init_plugin_loader, inventory_loader
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

    if not any(isinstance(f, _AnsibleCollectionFinder) for f in sys.meta_path):
        for name in [m for m in sys.modules if m.split(".")[0] == "ansible_collections"]:
            del sys.modules[name]
        init_plugin_loader([str(REPO / "collections")])
    plugin = inventory_loader.get("localllm.fleet.gpu_tier")
    assert plugin is not None, "localllm.fleet.gpu_tier did not load"
    return inventory_loader


LOADER = _install_collection_loader()


def new_plugin():
    return LOADER.get("localllm.fleet.gpu_tier")


ssh_probe = sys.modules["ansible_collections.localllm.fleet.plugins.plugin_utils.ssh_probe"]


class FakeProber:
    """Answers each host with a canned probe output (or an error) and records the calls."""

    def __init__(self, answers: dict[str, str | Exception]) -> None:
        self.answers = answers
        self.calls: list[list] = []

    def __call__(self, targets, settings, warn):
        self.calls.append(list(targets))
        result = {}
        for target in targets:
            answer = self.answers.get(target.name, self.answers.get("*"))
            if isinstance(answer, Exception):
                result[target.name] = ssh_probe.Outcome(target.name, None, str(answer))
            else:
                result[target.name] = ssh_probe.Outcome(target.name, answer, None, 0)
        return result

    @property
    def probed(self) -> list[str]:
        return [t.name for call in self.calls for t in call]


def lab_output(profile: str) -> str:
    return (FIXTURES / "probe" / f"lab-{profile}.txt").read_text()
