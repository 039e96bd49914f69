"""Reading a stored model the way the server sees it (server/images.go GetModel, capabilities,
the `ollama show` view) and creating one (server/create.go)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import envconfig, ggufinfo, gotemplate, names, store
from .goformat import go_sharp_v, go_v, human_number
from .gojson import F32, GoMap, encode_line, from_json_value
from .names import Name

DEFAULT_TEMPLATE = "{{ .Prompt }}"


def _chat_template_capabilities(chat_template: str) -> list[str]:
    """chatTemplateCapabilities: what a GGUF's Jinja chat template supports."""
    caps = []
    if not chat_template:
        return caps
    if "tools" in chat_template or "tool_call" in chat_template:
        caps.append("tools")
    splits = "content.split('</think>')" in chat_template
    splits = splits or 'content.split("</think>")' in chat_template
    if ("<think>" in chat_template and "</think>" in chat_template) or (
        splits and "reasoning_content" not in chat_template and "<SPECIAL_12>" not in chat_template
    ):
        caps.append("thinking")
    return caps


def _chat_template_round_trip(chat_template: str) -> bool:
    """chatTemplateHasToolRoundTrip: it renders tool calls and their results."""
    if not _chat_template_capabilities(chat_template).count("tools"):
        return False
    calls = "tool_calls" in chat_template or "assistant_tool_call" in chat_template
    results = any(
        marker in chat_template
        for marker in (
            "tool_response",
            "tool_results",
            "role'] == 'tool'",
            'role\'] == "tool"',
            "role\"] == 'tool'",
            'role"] == "tool"',
            "message.role == 'tool'",
            'message.role == "tool"',
            "ipython",
        )
    )
    return calls and results


Progress = Callable[[dict], None]


class ModelNotFound(Exception):
    pass


class BadRequest(Exception):
    """An error the create handler reports with HTTP 400 (when nothing was streamed yet)."""


@dataclass
class Model:
    name: Name
    manifest: store.Manifest
    config: dict[str, Any]
    model_path: str = ""
    parent_model: str = ""
    adapter_paths: list[str] = field(default_factory=list)
    projector_paths: list[str] = field(default_factory=list)
    template: str = DEFAULT_TEMPLATE
    has_template: bool = False
    system: str = ""
    options: GoMap = field(default_factory=GoMap)
    messages: list[dict[str, str]] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)

    @property
    def short_name(self) -> str:
        return self.name.display_shortest()

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def parsed_template(self) -> gotemplate.Template | None:
        try:
            return gotemplate.parse(self.template)
        except gotemplate.TemplateError:
            return None

    def gguf(self) -> ggufinfo.GGUFInfo | None:
        if not self.model_path or self.config.get("model_format", "gguf") not in ("", "gguf"):
            return None
        try:
            return ggufinfo.read(self.model_path)
        except (ggufinfo.GGUFError, OSError):
            return None

    def _template_capabilities(self) -> list[str]:
        """goTemplateCapabilities: .Tools -> tools, .Suffix -> insert, thinking tags."""
        tmpl = self.parsed_template()
        if tmpl is None:
            return []
        caps = []
        variables = tmpl.vars()
        if "tools" in variables:
            caps.append("tools")
        if "suffix" in variables:
            caps.append("insert")
        opening, closing = tmpl.infer_thinking_tags()
        if opening and closing:
            caps.append("thinking")
        return caps

    def _prefers_chat_template(self, chat_template: str) -> bool:
        """GetModel's PreferChatTemplate (OLLAMA_GO_TEMPLATE unset, no renderer or parser): the
        GGUF's chat template wins over a TEMPLATE that gives fewer capabilities, unless the
        TEMPLATE round-trips tool calls and the chat template does not."""
        if (
            envconfig.var("OLLAMA_GO_TEMPLATE")
            or not self.has_template
            or not chat_template
            or self.config.get("renderer")
            or self.config.get("parser")
        ):
            return False
        chat = _chat_template_capabilities(chat_template)
        go = self._template_capabilities()
        raw = self.template
        go_round_trip = (
            "tools" in go
            and "toolcalls" in (self.parsed_template().vars() if self.parsed_template() else [])
            and ('eq .Role "tool"' in raw or "tool_response" in raw or "TOOL_RESULTS" in raw)
        )
        chat_round_trip = _chat_template_round_trip(chat_template)
        if len(chat) > len(go):
            return not go_round_trip or chat_round_trip
        if sorted(chat) != sorted(go) or "tools" not in chat:
            return False
        return chat_round_trip and not go_round_trip

    def _uses_go_template(self, chat_template: str) -> bool:
        """shouldUseGoTemplate: a TEMPLATE renders the chat (OLLAMA_GO_TEMPLATE, default on)."""
        if not self.has_template:
            return False
        go_template = envconfig.env_bool("OLLAMA_GO_TEMPLATE", True)
        if envconfig.var("OLLAMA_GO_TEMPLATE"):
            return go_template
        return go_template and not self._prefers_chat_template(chat_template)

    def capabilities(self) -> list[str]:
        """Model.Capabilities at v0.32.15 (server/images.go): the config's, the GGUF's (its
        chat template's when that renders the chat), a projector's, the TEMPLATE's when it
        renders the chat, gpt-oss's thinking."""
        caps: list[str] = []

        def add(cap: str) -> None:
            if cap and cap not in caps:
                caps.append(cap)

        for cap in self.config.get("capabilities") or []:
            add(str(cap))
        info = self.gguf()
        chat_template = ""
        if info is not None:
            value = info.get("tokenizer.chat_template")
            chat_template = value if isinstance(value, str) else ""
        uses_go = self._uses_go_template(chat_template)
        rendered_by_ollama = uses_go or self.config.get("renderer") or self.config.get("parser")
        if info is not None:
            if not rendered_by_ollama:
                for cap in _chat_template_capabilities(chat_template):
                    add(cap)
            add("embedding" if info.arch_value("pooling_type") is not None else "completion")
            if info.arch_value("vision.block_count") is not None:
                add("vision")
            if info.arch_value("audio.block_count") is not None:
                add("audio")
        if self.projector_paths:
            add("vision")
        if uses_go or not self.has_template:
            for cap in self._template_capabilities():
                add(cap)
        if self.config.get("model_family") in ("gptoss", "gpt-oss"):
            add("thinking")
        return caps

    def details(self) -> dict[str, Any]:
        families = self.config.get("model_families")
        return {
            "parent_model": self.parent_model,
            "format": self.config.get("model_format", "") or "",
            "family": self.config.get("model_family", "") or "",
            "families": list(families) if families else None,
            "parameter_size": self.config.get("model_type", "") or "",
            "quantization_level": self.config.get("file_type", "") or "",
        }


def load(name: Name) -> Model:
    """GetModel. Raises FileNotFoundError when the manifest is missing."""
    manifest = store.read_manifest(name)
    config: dict[str, Any] = {}
    if manifest.config.digest:
        with open(store.blobs_path(manifest.config.digest), "rb") as handle:
            loaded = json.loads(handle.read().decode("utf-8", errors="replace") or "{}")
            if isinstance(loaded, dict):
                config = loaded
    model = Model(name=name, manifest=manifest, config=config)
    for layer in manifest.layers:
        path = store.blobs_path(layer.digest)
        media = layer.media_type
        if media == store.MEDIA_MODEL:
            model.model_path = path
            model.parent_model = layer.from_
        elif media == store.MEDIA_ADAPTER:
            model.adapter_paths.append(path)
        elif media == store.MEDIA_PROJECTOR:
            model.projector_paths.append(path)
        elif media in (store.MEDIA_TEMPLATE, store.MEDIA_PROMPT):
            model.template = store.read_blob_text(layer.digest)
            model.has_template = True
        elif media == store.MEDIA_SYSTEM:
            model.system = store.read_blob_text(layer.digest)
        elif media == store.MEDIA_PARAMS:
            options = json.loads(store.read_blob_text(layer.digest) or "{}")
            model.options = from_json_value(options) if isinstance(options, dict) else GoMap()
        elif media == store.MEDIA_MESSAGES:
            messages = json.loads(store.read_blob_text(layer.digest) or "[]")
            model.messages = [
                {"role": str(m.get("role", "")).lower(), "content": str(m.get("content", ""))}
                for m in messages
                if isinstance(m, dict)
            ]
        elif media == store.MEDIA_LICENSE:
            model.licenses.append(store.read_blob_text(layer.digest))
    return model


# -------------------------------------------------------------------------- show


def _quote(value: str) -> str:
    """parser.quote: wrap values with newlines or edge spaces."""
    if "\n" in value or value.startswith(" ") or value.endswith(" "):
        if '"' in value:
            return f'"""{value}"""'
        return f'"{value}"'
    return value


def modelfile_text(model: Model) -> str:
    """Model.String(): the Modelfile `ollama show --modelfile` prints (after its header)."""
    lines: list[str] = []
    lines.append(f"FROM {model.model_path}")
    lines += [f"ADAPTER {_quote(p)}" for p in model.adapter_paths]
    lines += [f"FROM {p}" for p in model.projector_paths]
    lines.append(f"TEMPLATE {_quote(model.template)}")
    if model.system:
        lines.append(f"SYSTEM {_quote(model.system)}")
    if model.config.get("renderer"):
        lines.append(f"RENDERER {_quote(model.config['renderer'])}")
    if model.config.get("parser"):
        lines.append(f"PARSER {_quote(model.config['parser'])}")
    for key in sorted(model.options):
        value = model.options[key]
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"PARAMETER {key} {_quote(go_v(item))}")
    lines += [f"LICENSE {_quote(text)}" for text in model.licenses]
    for message in model.messages:
        lines.append(f"MESSAGE {message['role']} {_quote(message['content'])}")
    return "".join(line + "\n" for line in lines)


def parameters_text(model: Model) -> str:
    rows: list[str] = []
    for key in sorted(model.options):
        value = model.options[key]
        for item in value if isinstance(value, list) else [value]:
            rows.append(f"{key:<30} {go_sharp_v(item)}")
    return "\n".join(rows)


def show(model: Model, verbose: bool, system_override: str = "") -> dict[str, Any]:
    """GetModelInfo: the /api/show response, fields in api.ShowResponse order."""
    if system_override:
        model.system = system_override
    details = model.details()
    info = None
    if model.model_path:
        if not os.path.exists(model.model_path):
            raise FileNotFoundError(2, "no such file or directory", model.model_path)
        try:
            info = ggufinfo.read(model.model_path)
        except ggufinfo.GGUFError as exc:
            raise RuntimeError(str(exc)) from exc
        if details["quantization_level"] in ("", "unknown"):
            name = ggufinfo.file_type_name(info.file_type)
            if name != "unknown":
                details["quantization_level"] = name
    header = (
        '# Modelfile generated by "ollama show"\n'
        "# To build a new Modelfile based on this, replace FROM with:\n"
        f"# FROM {model.short_name}\n\n"
    )
    out: dict[str, Any] = {}
    license_text = "\n".join(model.licenses)
    if license_text:
        out["license"] = license_text
    out["modelfile"] = header + modelfile_text(model)
    params = parameters_text(model)
    if params:
        out["parameters"] = params
    if model.template:
        out["template"] = model.template
    if model.system:
        out["system"] = model.system
    if model.config.get("renderer"):
        out["renderer"] = model.config["renderer"]
    if model.config.get("parser"):
        out["parser"] = model.config["parser"]
    out["details"] = details
    if model.messages:
        out["messages"] = [{"role": m["role"], "content": m["content"]} for m in model.messages]
    out["model_info"] = info.kv(verbose) if info is not None else GoMap()
    if info is not None and info.tensors:
        out["tensors"] = [
            {"name": t.name, "type": t.type_name, "shape": t.shape} for t in info.tensors
        ]
    caps = model.capabilities()
    if caps:
        out["capabilities"] = caps
    out["modified_at"] = model.manifest.mtime_ns
    if model.config.get("requires"):
        out["requires"] = model.config["requires"]
    return out


def list_entry(name: Name, manifest: store.Manifest) -> dict[str, Any]:
    """One /api/tags entry (server/model_list_cache.go)."""
    config: dict[str, Any] = {}
    if manifest.config.digest:
        try:
            with open(store.blobs_path(manifest.config.digest), "rb") as handle:
                loaded = json.loads(handle.read() or b"{}")
                config = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            config = {}
    details: dict[str, Any] = {
        "parent_model": "",
        "format": config.get("model_format", "") or "",
        "family": config.get("model_family", "") or "",
        "families": list(config.get("model_families") or []) or None,
        "parameter_size": config.get("model_type", "") or "",
        "quantization_level": config.get("file_type", "") or "",
    }
    context_length = int(config.get("context_length") or 0)
    embedding_length = int(config.get("embedding_length") or 0)
    caps: list[str] = []

    def add(cap: str) -> None:
        if cap and cap not in caps:
            caps.append(cap)

    model_path = ""
    template = DEFAULT_TEMPLATE
    for layer in manifest.layers:
        if layer.media_type == store.MEDIA_MODEL:
            model_path = store.blobs_path(layer.digest)
            details["parent_model"] = layer.from_
        elif layer.media_type in (store.MEDIA_TEMPLATE, store.MEDIA_PROMPT):
            try:
                template = store.read_blob_text(layer.digest)
            except OSError:
                template = DEFAULT_TEMPLATE
    if model_path and not config.get("remote_host"):
        try:
            summary = ggufinfo.read_header_summary(model_path)
        except (ggufinfo.GGUFError, OSError):
            summary = None
        if summary:
            if summary["vision"]:
                add("vision")
            add("embedding" if summary["pooling"] else "completion")
            if not context_length and isinstance(summary["context_length"], int):
                context_length = summary["context_length"]
            if not embedding_length and isinstance(summary["embedding_length"], int):
                embedding_length = summary["embedding_length"]
            if (
                details["quantization_level"] in ("", "unknown")
                and summary["file_type"] != "unknown"
            ):
                details["quantization_level"] = summary["file_type"]
    for cap in config.get("capabilities") or []:
        add(str(cap))
    try:
        tmpl = gotemplate.parse(template)
    except gotemplate.TemplateError:
        tmpl = None
    if tmpl is not None:
        variables = tmpl.vars()
        if "tools" in variables:
            add("tools")
        if "suffix" in variables:
            add("insert")
        opening, closing = tmpl.infer_thinking_tags()
        if "thinking" not in caps and (
            (opening and closing) or config.get("model_family") in ("gptoss", "gpt-oss")
        ):
            add("thinking")
    if context_length:
        details["context_length"] = context_length
    if embedding_length:
        details["embedding_length"] = embedding_length
    entry: dict[str, Any] = {
        "name": name.display_shortest(),
        "model": name.display_shortest(),
        "modified_at": manifest.mtime_ns,
        "size": manifest.size,
        "digest": manifest.digest,
        "details": details,
    }
    if caps:
        entry["capabilities"] = caps
    return entry


# ------------------------------------------------------------------------- create

SUPPORTED_QUANT = {
    "F32": 0,
    "F16": 1,
    "Q8_0": 7,
    "Q4_K_S": 14,
    "Q4_K_M": 15,
    "Q4_K": 15,
    "BF16": 32,
}


def _gguf_layer(
    digest: str, source_name: str, progress: Progress
) -> tuple[store.Layer, ggufinfo.GGUFInfo]:
    progress({"status": "parsing GGUF"})
    path = store.blobs_path(digest)
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head != ggufinfo.GGUF_MAGIC:
        raise BadRequest("supplied file was not in GGUF format")
    try:
        info = ggufinfo.read(path)
    except ggufinfo.GGUFError as exc:
        raise RuntimeError(str(exc)) from exc
    media = store.MEDIA_MODEL
    if info.kind == "adapter":
        media = store.MEDIA_ADAPTER
    elif info.kind in ("projector", "mmproj"):
        media = store.MEDIA_PROJECTOR
    return store.layer_from_existing(digest, media, source_name), info


def _validate_copy(layer: store.Layer, progress: Progress) -> tuple[store.Layer, ggufinfo.GGUFInfo]:
    """Ollama re-serializes imported GGUF files with llama-quantize (COPY): a new blob."""
    src = store.blobs_path(layer.digest)
    total = layer.size
    progress(
        {
            "status": "validating GGUF model",
            "digest": "0000000000000000000",
            "total": total,
            "completed": 0,
        }
    )
    with store.temp_in(os.path.dirname(src), "COPY") as (handle, tmp_path):
        ggufinfo.rewrite(src, handle)
        handle.flush()
        progress(
            {
                "status": "validating GGUF model",
                "digest": "0000000000000000000",
                "total": total,
                "completed": total,
            }
        )
        progress({"status": "verifying conversion"})
        handle.seek(0)
        new = store.new_layer(iter(lambda: handle.read(1 << 20), b""), layer.media_type)
        del tmp_path
    return new, ggufinfo.read(store.blobs_path(new.digest))


def _remove_media(layers: list[store.Layer], media: str) -> list[store.Layer]:
    kept = [layer for layer in layers if layer.media_type != media]
    removed = [layer.digest for layer in layers if layer.media_type == media]
    if removed:
        store.remove_unused_layers(removed)
    return kept


def _license_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError("json: cannot unmarshal into Go value of type []string")


def _params_value(value: Any) -> Any:
    return from_json_value(value)


def create(
    name: Name,
    request: dict[str, Any],
    progress: Progress,
    pull: Callable[[str, Progress], None],
    no_prune: bool,
) -> None:
    """CreateHandler's goroutine: build layers and config, write the manifest."""
    try:
        old_manifest: store.Manifest | None = store.read_manifest(name)
    except (OSError, ValueError):
        old_manifest = None
    config: dict[str, Any] = {"os": "linux", "architecture": "amd64"}
    renderer = request.get("renderer") or ""
    parser = request.get("parser") or ""
    requires = request.get("requires") or ""
    model_format = ""
    capabilities: list[str] = []
    base: list[tuple[store.Layer, ggufinfo.GGUFInfo | None, bool]] = []  # layer, gguf, rewrite
    files = request.get("files")
    if request.get("from"):
        raw_from = str(request["from"])
        try:
            base_ref, source = names.parse_ref(raw_from)
        except ValueError as exc:
            raise BadRequest("invalid model name") from exc
        from_name = names.parse(base_ref)
        if not from_name.valid:
            raise BadRequest("invalid model name")
        if source == "cloud" or request.get("remote_host"):
            raise RuntimeError("remote models are not available in this stand-in")
        try:
            source_manifest = store.read_manifest(from_name)
        except FileNotFoundError:
            pull(str(from_name), progress)
            source_manifest = store.read_manifest(from_name)
        for src in source_manifest.layers:
            layer = store.layer_from_existing(
                src.digest, src.media_type, from_name.display_shortest()
            )
            layer.name = src.name
            info = None
            if src.media_type in (store.MEDIA_MODEL, store.MEDIA_PROJECTOR, store.MEDIA_ADAPTER):
                try:
                    info = ggufinfo.read(store.blobs_path(src.digest))
                except ggufinfo.GGUFError as exc:
                    raise RuntimeError(str(exc)) from exc
            base.append((layer, info, False))
        if source_manifest.config.digest:
            try:
                with open(store.blobs_path(source_manifest.config.digest), "rb") as handle:
                    base_config = json.loads(handle.read() or b"{}")
                renderer = renderer or base_config.get("renderer", "")
                parser = parser or base_config.get("parser", "")
                requires = requires or base_config.get("requires", "")
                model_format = base_config.get("model_format", "") or ""
                capabilities = list(base_config.get("capabilities") or [])
            except (OSError, ValueError):
                pass
    elif files is not None:
        if not files:
            raise BadRequest("no files provided to convert")
        paths = sorted(files)
        if any(p.endswith(".safetensors") for p in paths):
            raise RuntimeError("safetensors import is not supported by this stand-in")
        if not any(p.endswith(".gguf") for p in paths):
            first = store.blobs_path(files[paths[0]])
            if not ggufinfo.is_gguf(first):
                raise BadRequest("unknown type")
        for path in paths:
            layer, info = _gguf_layer(files[path], path, progress)
            base.append((layer, info, True))
    else:
        raise BadRequest("neither 'from' or 'files' was specified")

    adapters = request.get("adapters")
    if adapters:
        if len(adapters) > 1:
            raise BadRequest("only one adapter is currently supported")
        for path in sorted(adapters):
            layer, info = _gguf_layer(adapters[path], path, progress)
            layer.media_type = store.MEDIA_ADAPTER
            base.append((layer, info, False))

    quantize = str(request.get("quantize") or request.get("quantization") or "").upper()
    layers: list[store.Layer] = []
    families: list[str] = []
    for base_layer, base_info, rewrite in base:
        layer, info = base_layer, base_info
        if info is not None and layer.media_type == store.MEDIA_MODEL:
            if quantize:
                if quantize not in SUPPORTED_QUANT:
                    raise RuntimeError(
                        f"unsupported quantization type {quantize} - "
                        "supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0"
                    )
                current = ggufinfo.file_type_name(info.file_type)
                if current not in ("F16", "BF16", "F32"):
                    raise RuntimeError(
                        "quantization is only supported for F16, BF16 and F32 models"
                    )
                if SUPPORTED_QUANT[quantize] != (info.file_type or 0):
                    raise RuntimeError("quantizing weights is not supported by this stand-in")
            if rewrite:
                layer, info = _validate_copy(layer, progress)
            model_format = model_format or "gguf"
            config.setdefault("model_family", info.architecture)
            config.setdefault("model_type", human_number(info.parameter_count))
            config.setdefault("file_type", ggufinfo.file_type_name(info.file_type))
            families.append(info.architecture)
        layers.append(layer)

    template = request.get("template") or ""
    if template:
        layers = _remove_media(layers, store.MEDIA_TEMPLATE)
        try:
            gotemplate.parse(template)
        except gotemplate.TemplateError as exc:
            raise BadRequest(f"template error: {exc}") from exc
        layers.append(store.new_layer_bytes(template.encode(), store.MEDIA_TEMPLATE))
    system = request.get("system") or ""
    if system:
        layers = _remove_media(layers, store.MEDIA_SYSTEM)
        layers.append(store.new_layer_bytes(system.encode(), store.MEDIA_SYSTEM))
    for text in _license_list(request.get("license")):
        layers.append(store.new_layer_bytes(text.encode(), store.MEDIA_LICENSE))

    params = GoMap((k, _params_value(v)) for k, v in (request.get("parameters") or {}).items())
    for layer in [x for x in layers if x.media_type == store.MEDIA_PARAMS]:
        existing = json.loads(store.read_blob_text(layer.digest) or "{}")
        for key, value in existing.items():
            params.setdefault(key, from_json_value(value))
    if params:
        layers = _remove_media(layers, store.MEDIA_PARAMS)
        layers.append(store.new_layer_bytes(encode_line(params), store.MEDIA_PARAMS))

    messages = request.get("messages") or []
    if messages:
        layers = _remove_media(layers, store.MEDIA_MESSAGES)
        payload = [_message_json(m) for m in messages]
        layers.append(store.new_layer_bytes(encode_line(payload), store.MEDIA_MESSAGES))

    ordered: dict[str, Any] = {
        "model_format": model_format,
        "model_family": config.get("model_family", ""),
        "model_families": families or None,
        "model_type": config.get("model_type", ""),
        "file_type": config.get("file_type", ""),
    }
    if renderer:
        ordered["renderer"] = renderer
    if parser:
        ordered["parser"] = parser
    if requires:
        ordered["requires"] = requires
    if capabilities:
        ordered["capabilities"] = capabilities
    ordered["architecture"] = "amd64"
    ordered["os"] = "linux"
    config_layer = store.new_layer_bytes(encode_line(ordered), store.CONFIG_MEDIA_TYPE)

    for layer in layers:
        if layer.status:
            progress({"status": layer.status})
    progress({"status": "writing manifest"})
    store.write_manifest(name, config_layer, layers)
    if not no_prune and old_manifest is not None:
        store.remove_unused_layers(old_manifest.all_digests())


def _message_json(message: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "role": str(message.get("role", "")).lower(),
        "content": message.get("content", "") or "",
    }
    for key in ("thinking", "tool_name", "tool_call_id"):
        if message.get(key):
            out[key] = message[key]
    for key in ("images", "tool_calls"):
        if message.get(key):
            out[key] = message[key]
    return out


def f32(value: float) -> F32:
    return F32(value)
