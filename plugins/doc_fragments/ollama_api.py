# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Options shared by the modules that talk to a host's Ollama API."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  api_url:
    description:
      - Base URL of the Ollama API on the managed host.
      - The role keeps Ollama on loopback, so the default reaches it from the host itself.
    type: str
    default: http://127.0.0.1:11434
  timeout:
    description:
      - Seconds an answer from Ollama may take as a whole (a server that sends it one byte at
        a time cannot hold the task longer); in a streamed answer, how long each line may
        take. At least V(1).
    type: int
    default: 600
"""
