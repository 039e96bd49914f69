# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Controller side of the slice-by-slice transfer modules (ollama_pull, download).

Those modules return `done: false` with a `progress` line after each time slice and are
called again by an `until:` loop. The default callback prints a retry's result only at -vv,
unless the result carries `_ansible_verbose_always`; a module cannot set that key (Ansible
strips `_ansible_*` keys from module output, with a warning), an action plugin can. This
one runs the module through the `normal` action and adds the marker while the transfer is
unfinished, so the progress shows at default verbosity.
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.action.normal import ActionModule as NormalAction


class TransferAction(NormalAction):
    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        if result.get("done") is False and not result.get("failed"):
            result["_ansible_verbose_always"] = True
        return result
