"""Ollama stand-in: a test double of the `ollama` binary (CLI, HTTP API, model store).

It exists only for this project's tests and lab; see tests/standins/ollama/README.md.
"""
