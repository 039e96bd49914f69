"""Build-time settings. `tests/standins/ollama/build` rewrites this file inside the artifact."""

VERSION = "0.0.0"
# "" for a working build; "http500", "exit" or "inference" for a deliberately broken build.
BROKEN = ""
