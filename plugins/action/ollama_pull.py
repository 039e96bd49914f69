# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Action for localllm.fleet.ollama_pull: shows the progress line on every `until:` retry."""

from __future__ import annotations

from ansible_collections.localllm.fleet.plugins.plugin_utils.transfer_action import (
    TransferAction,
)


class ActionModule(TransferAction):
    pass
