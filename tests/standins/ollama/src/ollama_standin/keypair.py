"""~/.ollama/id_ed25519: `ollama serve` creates an Ed25519 key pair on first start
(cmd/cmd.go initializeKeypair) and fails when it cannot (e.g. an unwritable home).

Python's standard library has no Ed25519, so the public key is derived here with the curve
arithmetic of RFC 8032; the files use the OpenSSH formats Go's x/crypto/ssh writes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_GY = (4 * pow(5, _P - 2, _P)) % _P


def _recover_x(y: int, sign: int) -> int:
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    if x & 1 != sign:
        x = _P - x
    return x


_G = (_recover_x(_GY, 0), _GY, 1, _recover_x(_GY, 0) * _GY % _P)


def _add(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % _P
    bb = (y1 + x1) * (y2 + x2) % _P
    cc = 2 * t1 * t2 * _D % _P
    dd = 2 * z1 * z2 % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(scalar: int, point: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    result = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def public_key(seed: bytes) -> bytes:
    digest = hashlib.sha512(seed).digest()
    a = int.from_bytes(digest[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    x, y, z, _ = _mul(a, _G)
    zinv = pow(z, _P - 2, _P)
    x, y = x * zinv % _P, y * zinv % _P
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def openssh_private(seed: bytes, pub: bytes) -> bytes:
    key_type = b"ssh-ed25519"
    pub_blob = _string(key_type) + _string(pub)
    check = os.urandom(4)
    private = check + check + _string(key_type) + _string(pub) + _string(seed + pub) + _string(b"")
    pad = 1
    while len(private) % 8:
        private += bytes([pad])
        pad += 1
    body = (
        b"openssh-key-v1\x00"
        + _string(b"none")
        + _string(b"none")
        + _string(b"")
        + struct.pack(">I", 1)
        + _string(pub_blob)
        + _string(private)
    )
    encoded = base64.b64encode(body).decode()
    lines = [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
    return (
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        + "\n".join(lines)
        + "\n-----END OPENSSH PRIVATE KEY-----\n"
    ).encode()


def openssh_public(pub: bytes) -> bytes:
    blob = _string(b"ssh-ed25519") + _string(pub)
    return b"ssh-ed25519 " + base64.b64encode(blob) + b"\n"


def ensure() -> None:
    """Create ~/.ollama/id_ed25519(.pub) when missing; OSError (Go's wording) on failure."""
    home = os.path.expanduser("~")
    private_path = os.path.join(home, ".ollama", "id_ed25519")
    public_path = private_path + ".pub"
    if os.path.exists(private_path):
        return
    print(f"Couldn't find '{private_path}'. Generating new private key.", flush=True)
    seed = os.urandom(32)
    pub = public_key(seed)
    directory = os.path.dirname(private_path)
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise OSError(
            exc.errno, f"could not create directory mkdir {directory}: {_reason(exc)}"
        ) from exc
    for path, data, mode in (
        (private_path, openssh_private(seed, pub), 0o600),
        (public_path, openssh_public(pub), 0o644),
    ):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        except OSError as exc:
            raise OSError(exc.errno, f"open {path}: {_reason(exc)}") from exc
    print(f"Your new public key is: \n\n{openssh_public(pub).decode()}", flush=True)


def _reason(exc: OSError) -> str:
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    return text[:1].lower() + text[1:]
