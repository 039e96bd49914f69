"""Make the collection importable from a clone, as Ansible does through ansible.cfg, and keep
every test away from the real home directory.

collections/ansible_collections/localllm/fleet is a link to the repository root, so
`ansible_collections.localllm.fleet.plugins.module_utils.<name>` imports the working tree.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
_COLLECTIONS = str(REPO_ROOT / "collections")
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)

# What a test could write below $HOME (the modules' digest cache in ~/.cache, Ansible's
# ~/.ansible): pointed into the session's temporary home with HOME itself.
_HOME_VARIABLES = ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory):
    """A temporary HOME for the whole session, set before any fixture of any scope runs
    (a session-scoped autouse fixture comes first), so that module- and session-scoped
    fixtures never write into the real home either. Tests that need a fresh one per test
    use `state_home` (tests/unit/ollama_module_testing.py) on top of it."""
    home = tmp_path_factory.mktemp("home")
    saved = {name: os.environ.get(name) for name in _HOME_VARIABLES}
    os.environ["HOME"] = str(home)
    for name in _HOME_VARIABLES[1:]:
        os.environ.pop(name, None)
    try:
        yield home
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# Fixtures that start the Ollama stand-in or build its lab models (Python 3.11 and numpy):
# a test using one is marked `standin`, so that the Python 3.9 run (tests/py39/run) can
# leave it to `make unit`.
_STANDIN_FIXTURES = {"artifact", "broken_artifact", "mirror", "server", "shared_server"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    del config
    for item in items:
        if _STANDIN_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.standin)
