#!/usr/bin/env python3
"""Publish a registry model for fanout_default on the lab mirror's static registry.

    registry_model.py MIRROR_DIR TAG SIZE_MIB [--forged]

Writes MIRROR_DIR/v2/molecule-fanout/deepseek-r1/{manifests/TAG, blobs/sha256:<hex>} from
the lab's library deepseek-r1:1.5b: its model layer becomes the stand-in GGUF padded to
SIZE_MIB (GGUF readers stop at the tensor data) and ending with the tag, so each tag has its
own digest; the config, template, license and params layers are the library's.

--forged: the manifest declares the digest of that padded file, but the file the registry
serves under that digest holds other bytes of the same size (a registry or a mirror that
serves what the manifest does not say).

Prints {"declared": <hex>, "served": <hex>, "size": <bytes>} of the model layer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

NAMESPACE = "molecule-fanout"
MODEL_LAYER = "application/vnd.ollama.image.model"


def padded(gguf: bytes, size: int, trailer: bytes) -> bytes:
    if len(gguf) + len(trailer) > size:
        sys.exit(f"registry_model: {size} bytes cannot hold the GGUF and its trailer")
    return gguf + bytes(size - len(gguf) - len(trailer)) + trailer


def compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4) or (len(argv) == 4 and argv[3] != "--forged"):
        sys.exit(__doc__)
    mirror, tag, size = Path(argv[0]), argv[1], int(argv[2]) << 20
    forged = len(argv) == 4
    library = mirror / "v2" / "library" / "deepseek-r1"
    target = mirror / "v2" / NAMESPACE / "deepseek-r1"
    (target / "blobs").mkdir(parents=True, exist_ok=True)
    (target / "manifests").mkdir(parents=True, exist_ok=True)

    manifest = json.loads((library / "manifests" / "1.5b").read_bytes())
    model = next(layer for layer in manifest["layers"] if layer["mediaType"] == MODEL_LAYER)
    gguf = (library / "blobs" / model["digest"]).read_bytes()
    declared = padded(gguf, size, f"\nfanout_default {tag}\n".encode())
    served = (
        padded(gguf, size, f"\nfanout_default {tag} (forged)\n".encode()) if forged else declared
    )
    digest = "sha256:" + hashlib.sha256(declared).hexdigest()
    (target / "blobs" / digest).write_bytes(served)

    config = json.loads((library / "blobs" / manifest["config"]["digest"]).read_bytes())
    ids = config["rootfs"]["diff_ids"]
    config["rootfs"]["diff_ids"] = [digest if d == model["digest"] else d for d in ids]
    config_bytes = compact(config)
    config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    (target / "blobs" / config_digest).write_bytes(config_bytes)
    for layer in manifest["layers"]:
        if layer is not model:
            shutil.copyfile(library / "blobs" / layer["digest"], target / "blobs" / layer["digest"])

    model.update(digest=digest, size=len(declared))
    manifest["config"].update(digest=config_digest, size=len(config_bytes))
    (target / "manifests" / tag).write_bytes(compact(manifest))
    print(
        json.dumps(
            {
                "declared": digest.split(":", 1)[1],
                "served": hashlib.sha256(served).hexdigest(),
                "size": len(declared),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
