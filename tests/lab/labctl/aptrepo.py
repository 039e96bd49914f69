"""Signed apt repositories for the lab's mirror: indexes, Release files and the lab's keys.

Shared by the publishers in tests/lab/publish.d that write apt repositories (the NVIDIA
stand-in packages and the distribution's own packages the roles install). Indexes are
written here rather than by apt-ftparchive so that nothing but dpkg-deb and gpg is needed.
The signing keys live under .lab/apt-keys/gnupg (made once, never committed):
  cuda     stands for NVIDIA's CUDA repository key
  archive  stands for the distribution's archive key (Debian's and Ubuntu's)
"""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import time
from email.utils import formatdate
from pathlib import Path

KEYS = {
    "cuda": "LocalLLM Lab CUDA repository signing key <cuda-repo@lab.localllm.invalid>",
    "archive": "LocalLLM Lab distribution archive signing key <archive@lab.localllm.invalid>",
}
#: The archive key as lab hosts install it (/etc/apt/keyrings/<this>), exported by publishers.
ARCHIVE_KEYRING = "localllm-lab-archive.gpg"


class Keys:
    """The lab's signing keys in one gnupg home."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def gpg(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["gpg", "--homedir", str(self.home), "--batch", "--no-tty", *args],
            check=True,
            capture_output=True,
            **kwargs,
        )

    def fingerprint(self, uid: str) -> str | None:
        command = ["gpg", "--homedir", str(self.home), "--batch", "--with-colons"]
        result = subprocess.run(
            [*command, "--list-secret-keys", uid],
            capture_output=True,
            text=True,
            check=False,
        )
        for line in result.stdout.splitlines():
            if line.startswith("fpr:"):
                return line.split(":")[9]
        return None

    def ensure(self, log) -> dict[str, str]:
        """Every key of KEYS, made when missing: name -> fingerprint."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        found = {}
        for name, uid in KEYS.items():
            fpr = self.fingerprint(uid)
            if fpr is None:
                log(f"making the lab's {name} signing key (once)")
                self.gpg("--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
                fpr = self.fingerprint(uid)
            found[name] = fpr
        return found

    def export(self, fingerprint: str) -> bytes:
        return self.gpg("--export", fingerprint).stdout

    def sign(self, directory: Path, fingerprint: str) -> None:
        """InRelease and Release.gpg next to directory/Release."""
        release = str(directory / "Release")
        self.gpg(
            "--yes", "--local-user", fingerprint, "--clearsign", "-o", str(directory / "InRelease"),
            release,
        )  # fmt: skip
        self.gpg(
            "--yes", "--local-user", fingerprint, "--armor", "--detach-sign",
            "-o", str(directory / "Release.gpg"), release,
        )  # fmt: skip

    def stop_agent(self) -> None:
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
            check=False,
            capture_output=True,
        )


def hashes(data: bytes) -> dict[str, str]:
    return {
        "MD5sum": hashlib.md5(data).hexdigest(),  # noqa: S324 - apt index format, not security
        "SHA1": hashlib.sha1(data).hexdigest(),  # noqa: S324 - apt index format, not security
        "SHA256": hashlib.sha256(data).hexdigest(),
    }


def stanza(control: str, deb: Path, filename: str) -> str:
    """A Packages stanza: the package's control fields plus where it is and its checksums."""
    lines = control.rstrip("\n").split("\n")
    description_at = next(i for i, line in enumerate(lines) if line.startswith("Description:"))
    data = deb.read_bytes()
    extra = [f"Filename: {filename}", f"Size: {len(data)}"]
    extra += [f"{k}: {v}" for k, v in hashes(data).items()]
    return "\n".join(lines[:description_at] + extra + lines[description_at:])


def packages_index(stanzas: list[str]) -> bytes:
    return ("\n\n".join(stanzas) + "\n").encode()


def write_index(directory: Path, data: bytes) -> None:
    (directory / "Packages").write_bytes(data)
    with gzip.GzipFile(directory / "Packages.gz", "wb", mtime=0) as handle:
        handle.write(data)


def release_file(fields: dict[str, str], directory: Path, files: list[str]) -> bytes:
    lines = [f"{k}: {v}" for k, v in fields.items()]
    lines.append(f"Date: {formatdate(time.time(), usegmt=True)}")
    for algorithm, label in (("md5", "MD5Sum"), ("sha1", "SHA1"), ("sha256", "SHA256")):
        lines.append(f"{label}:")
        for name in files:
            data = (directory / name).read_bytes()
            digest = hashlib.new(algorithm, data).hexdigest()
            lines.append(f" {digest} {len(data):>16} {name}")
    return ("\n".join(lines) + "\n").encode()
