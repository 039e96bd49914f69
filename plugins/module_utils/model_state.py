# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""What a model is made of, as Ollama registers it: read back, predicted, compared.

`ollama_model` is idempotent by content: it predicts what POST /api/create would register
for a Modelfile and compares that with what the existing model holds, so nothing is created
when they agree. The prediction follows Ollama v0.32.15's server/create.go:

- FROM <model>: the base's layers are copied (model, projector, adapter, draft layers keep
  their digests); TEMPLATE and SYSTEM replace the base's when given; LICENSE texts are
  appended to the base's; PARAMETERs are merged into the base's (the Modelfile wins per
  name, a `stop` list replaces the base's whole list); MESSAGEs replace the base's when
  given; RENDERER, PARSER and REQUIRES fall back to the base's config.
- FROM <file>: the GGUF is re-serialized (`llama-quantize COPY`), so the model layer's digest
  need not be the file's; the server may also detect a chat template (and its stop
  parameters) from the file. Neither can be predicted without doing the work, so what an
  import produced is remembered (ImportRecord) and used next time.

The existing model is read from /api/show: the layer digests from the FROM/ADAPTER/DRAFT
lines of its Modelfile, the template/renderer/parser from the same text (the `template`
field may hold the GGUF's native chat template instead), typed parameters from the
`parameters` table (Go's %#v), and system, license, messages and requires from their fields.
Text values are compared the way they read back from `ollama show --modelfile`, so an
unchanged model compares equal even where that text is lossy.

Pure functions, standard library only.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils.modelfile._syntax import (
    PARAMETER_TYPES,
    Command,
    ModelfileError,
    parse,
    serialize,
)

DEFAULT_TEMPLATE = "{{ .Prompt }}"
_BLOB_RE = re.compile(r"sha256[-:]([0-9a-f]{64})$")
_PARAM_ROW = re.compile(r"^(\S+) +(.*)$")
_RECORD_ALTERNATIVES = 4

__all__ = [
    "DEFAULT_TEMPLATE",
    "ModelContent",
    "content_from_show",
    "desired_content",
    "differences",
    "files_key",
    "go_unquote",
    "learn_import",
    "parse_parameters",
    "render",
    "roundtrip",
]


@dataclass(frozen=True)
class ModelContent:
    """The parts of a registered model that `ollama_model` compares."""

    models: tuple[str, ...] = ()  # model and projector layer digests (FROM lines), sorted
    adapters: tuple[str, ...] = ()
    draft: tuple[str, ...] = ()
    template: str = DEFAULT_TEMPLATE
    system: str = ""
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    license: str = ""  # the LICENSE texts joined with "\n", as /api/show gives them
    messages: tuple[tuple[str, str], ...] = ()
    # For display only: how the FROM/ADAPTER lines are written.
    from_lines: tuple[str, ...] = ()
    adapter_lines: tuple[str, ...] = ()
    # Other digests the model layers may legitimately have (a remembered import).
    model_alternatives: tuple[tuple[str, ...], ...] = ()


# --------------------------------------------------------------------------- Go values


_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}


def go_unquote(text: str) -> str:
    """Undo Go's strconv.Quote (what %#v prints for a string). ValueError if malformed."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError(f"not a Go string literal: {text!r}")
    body = text[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8", errors="surrogatepass")
            i += 1
            continue
        kind = body[i + 1 : i + 2]
        if kind in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[kind].encode()
            i += 2
        elif kind == "x":
            out.append(int(body[i + 2 : i + 4], 16))
            i += 4
        elif kind in ("u", "U"):
            width = 4 if kind == "u" else 8
            out += chr(int(body[i + 2 : i + 2 + width], 16)).encode("utf-8", "surrogatepass")
            i += 2 + width
        elif kind.isdigit():
            out.append(int(body[i + 1 : i + 4], 8))
            i += 4
        else:
            raise ValueError(f"bad escape in Go string literal: {text!r}")
    return out.decode("utf-8", errors="replace")


def _go_value(raw: str) -> Any:
    """A value as Go's %#v printed it: string, bool or number (JSON numbers are float64)."""
    if raw.startswith('"'):
        try:
            return go_unquote(raw)
        except (ValueError, IndexError):  # not what Go prints: keep the text as it is
            return raw
    if raw in ("true", "false"):
        return raw == "true"
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        return raw


def parse_parameters(table: str) -> dict[str, Any]:
    """The `parameters` of /api/show (`name<pad> %#v` rows) as typed values.

    Repeated names (and names Ollama types as lists, such as `stop`) become lists.
    """
    values: dict[str, list[Any]] = {}
    for row in table.splitlines():
        match = _PARAM_ROW.match(row)
        if not match:
            continue
        values.setdefault(match.group(1), []).append(_go_value(match.group(2).strip()))
    result: dict[str, Any] = {}
    for name, items in values.items():
        if PARAMETER_TYPES.get(name) is list or len(items) > 1:
            result[name] = items
        else:
            result[name] = items[0]
    return result


def _go_quote_modelfile(value: str) -> str:
    """parser.quote: what Ollama writes after a keyword in a Modelfile it prints."""
    if "\n" in value or value.startswith(" ") or value.endswith(" "):
        return f'"""{value}"""' if '"' in value else f'"{value}"'
    return value


def roundtrip(keyword: str, value: str) -> str:
    """`value` as it reads back from a Modelfile that Ollama printed (`ollama show`)."""
    text = f"FROM x\n{keyword.upper()} {_go_quote_modelfile(value)}\n"
    try:
        commands = parse(text, validate=False).commands
    except ModelfileError:
        return value
    for command in commands:
        if command.name == keyword.lower():
            return command.args
    return value


# --------------------------------------------------------------------------- reading


def _digest_of(path: str) -> str:
    match = _BLOB_RE.search(path)
    return f"sha256:{match.group(1)}" if match else path


def content_from_show(show: dict[str, Any]) -> ModelContent:
    """What an existing model holds, from its /api/show answer."""
    text = str(show.get("modelfile") or "")
    commands: list[Command] | None
    try:
        commands = parse(text, validate=False).commands
    except ModelfileError:
        commands = None
    if commands is None:  # a value Ollama printed that does not read back: use the fields
        commands = [
            Command(name, value.strip())
            for keyword, name in (("FROM", "model"), ("ADAPTER", "adapter"), ("DRAFT", "draft"))
            for value in re.findall(rf"^{keyword} (.*)$", text, flags=re.MULTILINE)
        ]
        commands.append(Command("template", str(show.get("template") or DEFAULT_TEMPLATE)))
    by_name: dict[str, list[str]] = {}
    for command in commands:
        by_name.setdefault(command.name, []).append(command.args)
    from_lines = tuple(by_name.get("model", []))
    adapter_lines = tuple(by_name.get("adapter", []))
    listed = show.get("messages")
    messages = tuple(
        (str(m.get("role", "")), str(m.get("content", "")))
        for m in (listed if isinstance(listed, list) else [])
        if isinstance(m, dict)
    )
    templates = by_name.get("template")
    return ModelContent(
        models=tuple(sorted(_digest_of(p) for p in from_lines if p)),
        adapters=tuple(sorted(_digest_of(p) for p in adapter_lines)),
        draft=tuple(sorted(_digest_of(p) for p in by_name.get("draft", []))),
        template=templates[-1] if templates else DEFAULT_TEMPLATE,
        system=str(show.get("system") or ""),
        renderer=(by_name.get("renderer") or [""])[-1],
        parser=(by_name.get("parser") or [""])[-1],
        requires=str(show.get("requires") or ""),
        parameters=parse_parameters(str(show.get("parameters") or "")),
        license=str(show.get("license") or ""),
        messages=messages,
        from_lines=from_lines,
        adapter_lines=adapter_lines,
    )


# --------------------------------------------------------------------------- predicting


def files_key(request: dict[str, Any]) -> str:
    """Identifies what an import is made from: the digests of its FROM files."""
    return ",".join(sorted((request.get("files") or {}).values()))


def desired_content(
    request: dict[str, Any],
    base: ModelContent | None,
    imported: dict[str, Any] | None = None,
    from_label: str = "",
) -> ModelContent:
    """What POST /api/create with `request` would register.

    `base` is the content of the FROM model (request["from"]); `imported` is what an
    earlier import of the same files produced (see learn_import), if known.
    """
    params: dict[str, Any] = dict(request.get("parameters") or {})
    licenses = [str(text) for text in request.get("license") or []]
    messages = tuple(
        (str(m.get("role", "")), str(m.get("content", ""))) for m in request.get("messages") or []
    )
    adapters = tuple(sorted((request.get("adapters") or {}).values()))
    draft = tuple(sorted((request.get("draft_files") or {}).values()))
    template = request.get("template")
    renderer = request.get("renderer")
    parser_name = request.get("parser")
    system = str(request.get("system") or "")
    requires = str(request.get("requires") or "")
    label = from_label or str(request.get("from") or "")

    if base is not None:
        return ModelContent(
            models=base.models,
            adapters=tuple(sorted(base.adapters + adapters)),
            draft=tuple(sorted(base.draft + draft)),
            template=roundtrip("template", template) if template else base.template,
            system=system or base.system,
            renderer=roundtrip("renderer", renderer) if renderer else base.renderer,
            parser=roundtrip("parser", parser_name) if parser_name else base.parser,
            requires=requires or base.requires,
            parameters={**base.parameters, **params},
            license="\n".join(([base.license] if base.license else []) + licenses),
            messages=messages or base.messages,
            from_lines=(label,),
            adapter_lines=base.adapter_lines + tuple(sorted(request.get("adapters") or {})),
        )

    record = imported or {}
    files = tuple(sorted((request.get("files") or {}).values()))
    alternatives = tuple(
        tuple(layers)
        for layers in record.get("layers") or []
        if isinstance(layers, list) and tuple(layers) != files
    )
    auto_template = record.get("template")
    auto_params = record.get("parameters") if isinstance(record.get("parameters"), dict) else {}
    return ModelContent(
        models=files,
        adapters=adapters,
        draft=draft,
        template=roundtrip("template", template)
        if template
        else (auto_template if isinstance(auto_template, str) else DEFAULT_TEMPLATE),
        system=system,
        renderer=roundtrip("renderer", renderer) if renderer else str(record.get("renderer") or ""),
        parser=roundtrip("parser", parser_name) if parser_name else str(record.get("parser") or ""),
        requires=requires,
        parameters={**auto_params, **params},
        license="\n".join(licenses),
        messages=messages,
        from_lines=(label,),
        adapter_lines=tuple(sorted(request.get("adapters") or {})),
        model_alternatives=alternatives,
    )


def learn_import(
    record: dict[str, Any] | None, request: dict[str, Any], created: ModelContent
) -> dict[str, Any]:
    """Remember what creating from these files produced (called after a create)."""
    old = record or {}
    layers = [list(created.models)]
    for previous in old.get("layers") or []:
        if isinstance(previous, list) and previous not in layers:
            layers.append(previous)
    asked = request.get("parameters") or {}
    old_params = old.get("parameters") if isinstance(old.get("parameters"), dict) else {}
    # Parameters the Modelfile did not set came from the import itself; for the ones it
    # set, what the import would add stays as last seen.
    params = {k: v for k, v in old_params.items() if k in asked}
    params.update({k: v for k, v in created.parameters.items() if k not in asked})
    new = {"layers": layers[:_RECORD_ALTERNATIVES], "parameters": params}
    for key, value in (
        ("template", created.template),
        ("renderer", created.renderer),
        ("parser", created.parser),
    ):
        new[key] = old.get(key) if request.get(key) else value
    return new


# --------------------------------------------------------------------------- comparing


def _same_value(left: Any, right: Any) -> bool:
    """Parameter equality as Ollama stores values: numbers are float64 (JSON), lists in order."""
    if isinstance(left, list) or isinstance(right, list):
        left_items = left if isinstance(left, list) else [left]
        right_items = right if isinstance(right, list) else [right]
        return len(left_items) == len(right_items) and all(
            _same_value(a, b)
            for a, b in zip(left_items, right_items)  # noqa: B905 - lengths equal; 3.9 hosts lack strict=
        )
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return float(left) == float(right)
    return left == right


def format_value(value: Any) -> str:
    """A parameter value as a Modelfile would write it (`0.6`, `4096`, `true`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)


def _show_value(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, list):
        return json.dumps([format_value(v) for v in value], ensure_ascii=False)
    return format_value(value)


def _short_text(text: str, limit: int = 60) -> str:
    if not text:
        return "(none)"
    shown = json.dumps(text, ensure_ascii=False)
    return shown if len(shown) <= limit else shown[: limit - 4] + '..."'


def _short_digests(digests: tuple[str, ...]) -> str:
    return ", ".join(d[:19] if d.startswith("sha256:") else d for d in digests) or "(none)"


def differences(existing: ModelContent, desired: ModelContent) -> list[str]:
    """Human-readable differences, e.g. `parameter temperature: 0.6 -> 0.5`; [] when equal."""
    out: list[str] = []
    if existing.models != desired.models and existing.models not in desired.model_alternatives:
        source = f" ({desired.from_lines[0]})" if desired.from_lines else ""
        out.append(
            f"model: {_short_digests(existing.models)} -> {_short_digests(desired.models)}{source}"
        )
    for label, old, new in (
        ("adapter", existing.adapters, desired.adapters),
        ("draft", existing.draft, desired.draft),
    ):
        if old != new:
            out.append(f"{label}: {_short_digests(old)} -> {_short_digests(new)}")
    for label, old_text, new_text in (
        ("template", existing.template, desired.template),
        ("system", existing.system, desired.system),
        ("renderer", existing.renderer, desired.renderer),
        ("parser", existing.parser, desired.parser),
        ("requires", existing.requires, desired.requires),
    ):
        if old_text != new_text:
            out.append(f"{label}: {_short_text(old_text)} -> {_short_text(new_text)}")
    for name in sorted(set(existing.parameters) | set(desired.parameters)):
        old_value = existing.parameters.get(name)
        new_value = desired.parameters.get(name)
        if old_value is None or new_value is None or not _same_value(old_value, new_value):
            if old_value is None and new_value is None:
                continue
            out.append(f"parameter {name}: {_show_value(old_value)} -> {_show_value(new_value)}")
    if existing.license != desired.license:
        out.append(f"license: {_short_text(existing.license)} -> {_short_text(desired.license)}")
    if existing.messages != desired.messages:
        out.append(f"messages: {len(existing.messages)} -> {len(desired.messages)} (changed)")
    return out


def render(content: ModelContent, from_lines: tuple[str, ...] | None = None) -> str:
    """The content as a Modelfile in a fixed layout, for diffs (not for `ollama create`)."""
    commands = [Command("model", line) for line in (from_lines or content.from_lines)]
    commands += [Command("adapter", line) for line in content.adapter_lines]
    commands.append(Command("template", content.template))
    for name in ("system", "renderer", "parser", "requires"):
        value = getattr(content, name)
        if value:
            commands.append(Command(name, value))
    for name in sorted(content.parameters):
        value = content.parameters[name]
        for item in value if isinstance(value, list) else [value]:
            commands.append(Command(name, format_value(item)))
    if content.license:
        commands.append(Command("license", content.license))
    commands += [Command("message", f"{role}: {text}") for role, text in content.messages]
    lines = []
    for command in commands:
        try:
            lines.append(serialize([command]))
        except ValueError:  # a value no Modelfile syntax can carry: show it escaped
            keyword = "PARAMETER " + command.name if command.name in PARAMETER_TYPES else None
            keyword = keyword or ("FROM" if command.name == "model" else command.name.upper())
            lines.append(f"{keyword} {json.dumps(command.args, ensure_ascii=False)}\n")
    return "".join(lines)


def for_display(content: ModelContent, like: ModelContent) -> ModelContent:
    """`content` with `like`'s FROM/ADAPTER lines where the layers are the same, so that a
    diff shows only what really differs."""
    same_models = content.models == like.models or content.models in like.model_alternatives
    return replace(
        content,
        from_lines=like.from_lines if same_models else content.from_lines,
        adapter_lines=like.adapter_lines
        if content.adapters == like.adapters
        else content.adapter_lines,
    )
