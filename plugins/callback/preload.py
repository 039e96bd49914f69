DOCUMENTATION = r"""
name: preload
type: aggregate
short_description: Load what every forked worker would load again, once, in the main process
description:
  - Ansible runs each task for each host in a worker process forked from the main one, and
    what a worker loads ends with it.
  - A worker that meets one of this collection's filters loads every filter file of the
    collection (ansible-core's Jinja2 plugin loader reads them all, in case a later file
    overrides a name) and the module_utils they import. On the lab fleet's no-op converge,
    loading them once in the main process saved about a sixth of the control node's CPU time.
  - A worker of Mitogen's strategy that runs a collection's module (community.crypto, this
    collection's) first lists every installed collection, which imports each collection's
    package and parses its C(meta/runtime.yml), about 0.1 s of CPU per such task with the
    C(ansible) package's hundred collections installed. Importing them once in the main
    process (about 0.06 s) saves that in every worker. Ansible's own strategy imports only
    the collections a task uses, and finds them already imported.
  - This callback does both when the playbook starts, so that every worker inherits them
    already loaded (docs/scaling.md).
  - It changes no output and no result; it only needs enabling (the project's ansible.cfg
    does).
requirements:
  - Enabled in C(callbacks_enabled) (ansible.cfg) or C(ANSIBLE_CALLBACKS_ENABLED).
"""

from ansible.collections.list import list_collection_dirs
from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import filter_loader

# Any filter of the collection: looking one up makes the loader read every filter file.
_ANY_FILTER = "localllm.fleet.ollama_version"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "localllm.fleet.preload"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_start(self, playbook):
        preload()


def preload() -> None:
    """Load the collection's filter files (and their module_utils), and import every installed
    collection's package (listing them imports each), into this process."""
    filter_loader.get(_ANY_FILTER)
    for _ in list_collection_dirs():
        pass
