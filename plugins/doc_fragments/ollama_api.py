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
      - The default is where the ollama role's default C(ollama_host) is reached from the host
        itself. The roles pass the address derived from the host's C(ollama_host)
        (C(ollama_models_api_url)), so Ollama on another port needs only that variable.
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
