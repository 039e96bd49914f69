DOCUMENTATION = r"""
name: preload
type: aggregate
short_description: Load this collection's filter plugins once, before Ansible forks its workers
description:
  - Ansible runs each task for each host in a worker process forked from the main one. A
    worker that meets one of this collection's filters loads every filter file of the
    collection (ansible-core's Jinja2 plugin loader reads them all, in case a later file
    overrides a name) and the module_utils they import, and that work ends with the worker.
  - This callback loads them in the main process when the playbook starts, so that every
    worker inherits them already loaded. On the lab fleet's no-op converge it saved about a
    sixth of the control node's CPU time (docs/scaling.md).
  - It changes no output and no result; it only needs enabling (the project's ansible.cfg
    does).
requirements:
  - Enabled in C(callbacks_enabled) (ansible.cfg) or C(ANSIBLE_CALLBACKS_ENABLED).
"""

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
    """Load the collection's filter files (and their module_utils) into this process."""
    filter_loader.get(_ANY_FILTER)
