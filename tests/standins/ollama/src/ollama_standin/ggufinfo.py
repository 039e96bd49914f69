"""GGUF metadata through the `gguf` package's reader, as Ollama's fs/ggml decoder exposes it.

Only the reader's submodules are imported: the package's __init__ also pulls in metadata.py,
which needs PyYAML, and lab hosts have numpy from the distribution but no PyYAML.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import struct
import sys
import types
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .gojson import F32, GoMap

GGUF_MAGIC = b"GGUF"
QUANTIZATION_VERSION = 2

# ggml FileType -> name (fs/ggml/type.go)
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M",
    30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
    39: "NVFP4", 40: "Q1_0",
}  # fmt: skip


class GGUFError(Exception):
    pass


def file_type_name(value: int | None) -> str:
    if not value:
        return "unknown"
    return FILE_TYPES.get(value, "unknown")


_reader_module: types.ModuleType | None = None


def _gguf_reader() -> types.ModuleType:
    global _reader_module  # noqa: PLW0603 - one import per process
    if _reader_module is not None:
        return _reader_module
    if "gguf" not in sys.modules:
        spec = importlib.util.find_spec("gguf")
        if spec is None or not spec.submodule_search_locations:
            raise GGUFError("the gguf package is not available")
        package = types.ModuleType("gguf")
        package.__path__ = list(spec.submodule_search_locations)
        package.__package__ = "gguf"
        sys.modules["gguf"] = package
    _reader_module = importlib.import_module("gguf.gguf_reader")
    return _reader_module


@dataclass
class Tensor:
    name: str
    type_name: str
    shape: list[int]
    n_elements: int
    n_bytes: int
    data_offset: int
    info_field: Any = None


@dataclass
class Field:
    name: str
    value_type: int
    sub_type: int | None
    value: Any
    raw: bytes


@dataclass
class GGUFInfo:
    version: int
    fields: dict[str, Field] = field(default_factory=dict)
    tensors: list[Tensor] = field(default_factory=list)
    alignment: int = 32

    @property
    def architecture(self) -> str:
        value = self.get("general.architecture")
        return value if isinstance(value, str) else "unknown"

    @property
    def kind(self) -> str:
        value = self.get("general.type")
        return value if isinstance(value, str) else "unknown"

    @property
    def parameter_count(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def file_type(self) -> int | None:
        value = self.get("general.file_type")
        return int(value) if isinstance(value, int) and value > 0 else None

    def get(self, key: str) -> Any:
        f = self.fields.get(key)
        return None if f is None else f.value

    def arch_value(self, suffix: str) -> Any:
        return self.get(f"{self.architecture}.{suffix}")

    def kv(self, verbose: bool) -> GoMap:
        """The KV map /api/show returns as model_info (arrays null unless verbose)."""
        out = GoMap()
        for name, f in self.fields.items():
            if name in ("general.name", "tokenizer.chat_template"):
                continue
            value = f.value
            if isinstance(value, list) and not verbose and len(value) > 0:
                value = None
            out[name] = value
        out["general.parameter_count"] = self.parameter_count
        return out


def is_gguf(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _convert(value: Any, value_type: int) -> Any:
    # GGUFValueType: 6 FLOAT32, 12 FLOAT64, 7 BOOL
    if value_type == 6:
        return F32(value)
    if value_type == 12:
        return float(value)
    if value_type == 7:
        return bool(value)
    return value


def read(path: str) -> GGUFInfo:
    module = _gguf_reader()
    try:
        reader = module.GGUFReader(path, "r")
    except (ValueError, OSError, IndexError, struct.error) as exc:
        raise GGUFError(str(exc) or type(exc).__name__) from exc
    except Exception as exc:  # numpy raises assorted errors on truncated files
        raise GGUFError(str(exc) or type(exc).__name__) from exc
    version_field = reader.fields.get("GGUF.version")
    info = GGUFInfo(version=int(version_field.contents()) if version_field else 3)
    for name, f in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        main = int(f.types[0]) if f.types else -1
        sub = int(f.types[-1]) if main == 9 and len(f.types) > 1 else None
        value = f.contents()
        if main == 9 and sub is not None:
            value = [_convert(v, sub) for v in value]
        else:
            value = _convert(value, main)
        raw = b"".join(part.tobytes() for part in f.parts)
        info.fields[name] = Field(name, main, sub, value, raw)
    alignment = info.get("general.alignment")
    if isinstance(alignment, int) and alignment > 0:
        info.alignment = alignment
    for t in reader.tensors:
        info.tensors.append(
            Tensor(
                name=t.name,
                type_name=t.tensor_type.name,
                shape=[int(x) for x in t.shape],
                n_elements=int(t.n_elements),
                n_bytes=int(t.n_bytes),
                data_offset=int(t.data_offset),
                info_field=t.field,
            )
        )
    return info


# ------------------------------------------------------------------ canonical rewrite


def _kv_bytes(key: str, value_type: int, payload: bytes) -> bytes:
    encoded = key.encode()
    return struct.pack("<Q", len(encoded)) + encoded + struct.pack("<I", value_type) + payload


def rewrite(path: str, out: BinaryIO) -> int:
    """Re-serialize a GGUF file the way `llama-quantize COPY` does when Ollama validates an
    imported model: same KV pairs and tensors, general.quantization_version and
    general.file_type set, data realigned. Returns the bytes written."""
    info = read(path)
    kv_raw: list[tuple[str, bytes]] = [(name, f.raw) for name, f in info.fields.items()]
    file_type = info.file_type if info.file_type is not None else 0
    updates = {
        "general.quantization_version": _kv_bytes(
            "general.quantization_version", 4, struct.pack("<I", QUANTIZATION_VERSION)
        ),
        "general.file_type": _kv_bytes("general.file_type", 4, struct.pack("<I", file_type)),
    }
    for key, payload in updates.items():
        for i, (name, _) in enumerate(kv_raw):
            if name == key:
                kv_raw[i] = (key, payload)
                break
        else:
            kv_raw.append((key, payload))
    align = info.alignment
    header = GGUF_MAGIC + struct.pack("<IQQ", 3, len(info.tensors), len(kv_raw))
    body = bytearray(header)
    for _, raw in kv_raw:
        body += raw
    offset = 0
    offsets = []
    for t in info.tensors:
        offsets.append(offset)
        offset += t.n_bytes
        offset += (-offset) % align
    for t, tensor_offset in zip(info.tensors, offsets, strict=True):
        name = t.name.encode()
        body += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(t.shape))
        body += b"".join(struct.pack("<Q", d) for d in t.shape)
        body += struct.pack("<I", _type_id(t)) + struct.pack("<Q", tensor_offset)
    body += b"\x00" * ((-len(body)) % align)
    out.write(bytes(body))
    written = len(body)
    with open(path, "rb") as src:
        for t in info.tensors:
            src.seek(t.data_offset)
            data = src.read(t.n_bytes)
            if len(data) != t.n_bytes:
                raise GGUFError("unexpected EOF")
            pad = b"\x00" * ((-t.n_bytes) % align)
            out.write(data + pad)
            written += len(data) + len(pad)
    return written


def _type_id(t: Tensor) -> int:
    module = _gguf_reader()
    return int(module.GGMLQuantizationType[t.type_name])


def read_header_summary(path: str) -> dict[str, Any]:
    """What /api/tags needs without reading tensors: architecture, context, embedding, file
    type, pooling (server/model_list_cache.go scans only the header)."""
    info = read(path)
    return {
        "architecture": info.architecture,
        "context_length": info.arch_value("context_length"),
        "embedding_length": info.arch_value("embedding_length"),
        "file_type": file_type_name(info.file_type),
        "pooling": info.arch_value("pooling_type") is not None,
        "vision": info.arch_value("vision.block_count") is not None,
    }


def data_size(path: str) -> int:
    return os.path.getsize(path)
