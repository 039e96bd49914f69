# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Controller side of the slice-by-slice transfer modules (ollama_pull, download).

Those modules return `done: false` with a `progress` line after each time slice and are
called again by an `until:` loop. The default callback prints a retry's result only at -vv,
unless the result carries `_ansible_verbose_always`; a module cannot set that key (Ansible
strips `_ansible_*` keys from module output, with a warning), an action plugin can. This
one runs the module exactly as the `normal` action does and adds the marker while the
transfer is unfinished, so the progress shows at default verbosity.
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash


class TransferAction(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        wrap_async = self._task.async_val and not self._connection.has_native_async
        result = merge_hash(
            result, self._execute_module(task_vars=task_vars, wrap_async=wrap_async)
        )
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        if result.get("done") is False and not result.get("failed"):
            result["_ansible_verbose_always"] = True
        return result
