# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Ollama Modelfile parser, validator, serializer and /api/create request builder.

Behaviour follows Ollama v0.32.15: the client-side parser (parser/parser.go), the checks
its CreateRequest runs before anything reaches the server (typed parameters, REQUIRES,
local paths), and what `ollama create` then sends to POST /api/create. Error texts are
Ollama's own, so an operator sees the message `ollama create` would print.

The package's parts, one concern each. The collection's own modules and plugins import a
name from its part; scripts, filters and other callers import it from here (the
`module_utils.modelfile` path of the single-file module before the split):

    _syntax.py        the language, text in and out: decode, parse, typed parameters,
                      REQUIRES, serialize
    _go_numbers.py    Go's strconv.ParseInt/ParseFloat(32)/ParseBool for PARAMETER values
    _create.py        model names, local files (a Modelfile on disk, paths, model
                      directories, digests) and the /api/create request
    _capabilities.py  what a TEMPLATE says a model can do (tools, insert, thinking)

Pure standard library, relative imports inside the package: it also runs on managed hosts
(Python 3.9+) and, copied whole, inside the Ollama stand-in used by the tests.
docs/modelfile.md explains the non-obvious choices.
"""

from __future__ import annotations

from ._capabilities import TEMPLATE_CAPABILITIES, template_capabilities
from ._create import check_model_file, create_request, expand_path, lint, validate_model_name
from ._syntax import (
    DEPRECATED_PARAMETERS,
    INSTRUCTIONS,
    MAX_MODELFILE_BYTES,
    MESSAGE_ROLES,
    PARAMETER_TYPES,
    PLAIN_KEYWORDS,
    Command,
    Modelfile,
    ModelfileError,
    decode,
    parameter_value,
    parameters,
    parse,
    parse_bytes,
    serialize,
)

__all__ = [
    "DEPRECATED_PARAMETERS",
    "INSTRUCTIONS",
    "MAX_MODELFILE_BYTES",
    "MESSAGE_ROLES",
    "PARAMETER_TYPES",
    "PLAIN_KEYWORDS",
    "TEMPLATE_CAPABILITIES",
    "Command",
    "Modelfile",
    "ModelfileError",
    "check_model_file",
    "create_request",
    "decode",
    "expand_path",
    "lint",
    "parameter_value",
    "parameters",
    "parse",
    "parse_bytes",
    "serialize",
    "template_capabilities",
    "validate_model_name",
]
