# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Hash-locked wheelhouses: the lock file, the names derived from it, checksum files.

Shared by scripts/wheelhouse (which writes locks and builds wheelhouses) and the
fleet_gateway role (which installs one). A lock is a pip requirements file in which every
line pins one distribution with `==` and its wheel's `--hash=sha256:`, preceded by `# key:
value` header lines that say what it was resolved for; `pip install --require-hashes
--no-index` accepts it as it is. The wheelhouse's name comes from the top requirement's
version and the digest of the lock's text, so a different lock is a different install.
Standard library only (the role's filters run it on the control node).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

LOCK_FORMAT = "1"
_WHEEL = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._]*[A-Za-z0-9])?)-(?P<version>[^-]+)"
    r"(?:-(?P<build>\d[^-]*))?-(?P<python>[^-]+)-(?P<abi>[^-]+)-(?P<platform>[^-]+)\.whl$"
)
_REQUIREMENT = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(?P<extras>\[[A-Za-z0-9._,-]+\])?"
    r"==(?P<version>[A-Za-z0-9.+!_-]+)$"
)
_HASH = re.compile(r"^--hash=sha256:(?P<hex>[0-9a-f]{64})$")
_HEADER = re.compile(r"^#\s*(?P<key>[a-z][a-z0-9-]*):\s*(?P<value>.*?)\s*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class WheelhouseError(ValueError):
    """A lock, wheel or checksum that cannot be trusted, said so that an operator can act."""


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: `Typing_Extensions` -> `typing-extensions`."""
    return re.sub(r"[-_.]+", "-", str(name)).lower()


def parse_wheel_filename(filename: str) -> dict[str, str]:
    """`pydantic_core-2.41.5-cp311-cp311-manylinux_2_17_x86_64.whl` -> its parts."""
    match = _WHEEL.match(str(filename).rsplit("/", 1)[-1])
    if not match:
        raise WheelhouseError(f"{filename!r} is not a wheel file name (PEP 427)")
    parts = match.groupdict()
    parts["project"] = canonical_name(parts["name"])
    return parts


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def render_lock(
    requirements: list[str], wheels: list[dict[str, str]], header: dict[str, str]
) -> str:
    """The lock text: header lines, then one pinned, hashed line per wheel (sorted by name).

    `requirements` are what was resolved (`litellm[proxy]==1.106.12`, ...); their lines keep
    the extras so that pip installs the same set. `wheels` are {filename, sha256}.
    """
    wanted: dict[str, Any] = {}
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement.strip())
        if not match:
            raise WheelhouseError(f"{requirement!r} must pin one version: NAME[EXTRAS]==VERSION")
        wanted[canonical_name(match["name"])] = match
    lines = [f"# {key}: {value}" for key, value in header.items()]
    seen: dict[str, str] = {}
    entries = []
    for wheel in wheels:
        parts = parse_wheel_filename(wheel["filename"])
        if not _HEX64.match(wheel["sha256"]):
            raise WheelhouseError(f"{wheel['filename']}: {wheel['sha256']!r} is not a sha256")
        project = parts["project"]
        if project in seen:
            raise WheelhouseError(
                f"two wheels of {project}: {seen[project]} and {wheel['filename']}; "
                "a lock holds one per distribution"
            )
        seen[project] = wheel["filename"]
        name = project
        if project in wanted:
            if parts["version"] != wanted[project]["version"]:
                raise WheelhouseError(
                    f"the resolution gave {project} {parts['version']}, "
                    f"not {wanted[project]['version']}"
                )
            name += wanted[project]["extras"] or ""
        entries.append(
            (project, f"{name}=={parts['version']} \\\n    --hash=sha256:{wheel['sha256']}")
        )
    missing = sorted(set(wanted) - set(seen))
    if missing:
        raise WheelhouseError(f"no wheel of {', '.join(missing)} among the resolved files")
    lines += [text for _, text in sorted(entries)]
    return "\n".join(lines) + "\n"


def parse_lock(text: str) -> dict[str, Any]:
    """{header: {key: value}, requirements: [{name, project, extras, version, sha256}]}."""
    header: dict[str, str] = {}
    requirements: list[dict[str, str]] = []
    logical: list[str] = []
    current = ""
    for number, raw in enumerate(str(text).splitlines(), start=1):
        stripped = raw.strip()
        if not current and stripped.startswith("#"):
            match = _HEADER.match(stripped)
            if match:
                header[match["key"]] = match["value"]
            continue
        if not stripped:
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(f"{number}:{current}{stripped}")
        current = ""
    if current:
        raise WheelhouseError("the lock ends inside a continued line (a trailing backslash)")
    projects: set[str] = set()
    for entry in logical:
        number, line = entry.split(":", 1)
        words = line.split()
        match = _REQUIREMENT.match(words[0])
        if not match:
            raise WheelhouseError(f"lock line {number}: {words[0]!r} is not NAME[EXTRAS]==VERSION")
        hashes = []
        for word in words[1:]:
            hash_match = _HASH.match(word)
            if not hash_match:
                raise WheelhouseError(f"lock line {number}: {word!r} is not --hash=sha256:<hex>")
            hashes.append(hash_match["hex"])
        if len(hashes) != 1:
            raise WheelhouseError(
                f"lock line {number}: {words[0]} needs exactly one --hash=sha256 "
                f"(has {len(hashes)})"
            )
        project = canonical_name(match["name"])
        if project in projects:
            raise WheelhouseError(f"lock line {number}: {project} is pinned twice")
        projects.add(project)
        requirements.append(
            {
                "name": match["name"],
                "project": project,
                "extras": match["extras"] or "",
                "version": match["version"],
                "sha256": hashes[0],
            }
        )
    if not requirements:
        raise WheelhouseError("the lock pins nothing")
    return {"header": header, "requirements": requirements}


def lock_digest(text: str) -> str:
    """sha256 of the lock's text, trailing whitespace ignored (so that an editor's final
    newline, or Ansible's file lookup which strips it, give the same digest)."""
    return hashlib.sha256(str(text).rstrip().encode()).hexdigest()


def wheelhouse_id(text: str) -> str:
    """`litellm-1.106.12-<16 hex of the lock digest>`: the tarball's stem and the versioned
    install's directory name. The top requirement is the lock's `top` header."""
    lock = parse_lock(text)
    top = lock["header"].get("top", "")
    match = _REQUIREMENT.match(top)
    if not match:
        raise WheelhouseError(
            f"the lock's '# top:' header {top!r} must name the pinned requirement it was made from"
        )
    return f"{canonical_name(match['name'])}-{match['version']}-{lock_digest(text)[:16]}"


def wheelhouse_info(text: str) -> dict[str, Any]:
    """What the role needs from a lock: id, tarball name, top project and version, number of
    wheels, the Python it was resolved for (X.Y and X.Y.Z)."""
    lock = parse_lock(text)
    ident = wheelhouse_id(text)
    top = _REQUIREMENT.match(lock["header"]["top"])
    assert top is not None  # checked by wheelhouse_id  # noqa: S101
    return {
        "id": ident,
        "tarball": f"{ident}.tar",
        "project": canonical_name(top["name"]),
        "version": top["version"],
        "wheels": len(lock["requirements"]),
        "digest": lock_digest(text),
        "python": lock["header"].get("python", ""),
        "python_full": lock["header"].get("python-full", ""),
    }


def expected_files(lock: dict[str, Any], filenames: list[str]) -> dict[str, list[str]]:
    """Match wheel files to the lock: {missing: [project], extra: [file], pairs: [[file, sha]]}."""
    wanted = {req["project"]: req for req in lock["requirements"]}
    found: dict[str, str] = {}
    extra = []
    for filename in sorted(filenames):
        try:
            parts = parse_wheel_filename(filename)
        except WheelhouseError:
            extra.append(filename)
            continue
        req = wanted.get(parts["project"])
        if req is None or req["version"] != parts["version"] or parts["project"] in found:
            extra.append(filename)
            continue
        found[parts["project"]] = filename
    return {
        "missing": sorted(set(wanted) - set(found)),
        "extra": extra,
        "pairs": [[found[p], wanted[p]["sha256"]] for p in sorted(found)],
    }


def render_sums(pairs: list[tuple[str, str]]) -> str:
    """sha256sum's format, `<hex>  <name>`, sorted by name."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(pairs))


def parse_sums(text: str) -> dict[str, str]:
    """`<hex>  <name>` (or `<hex> *<name>`) lines -> {name: hex}."""
    sums: dict[str, str] = {}
    for number, raw in enumerate(str(text).splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or not _HEX64.match(parts[0].lower()):
            raise WheelhouseError(
                f"checksum line {number} is not '<sha256>  <file>': {line[:80]!r}"
            )
        sums[parts[1].lstrip("*").removeprefix("./")] = parts[0].lower()
    return sums


def checksum_for(text: str, filename: str) -> str:
    """The sha256 that a `.sha256` / SHA256SUMS text gives for `filename`."""
    sums = parse_sums(text)
    if filename in sums:
        return sums[filename]
    raise WheelhouseError(f"the checksum file has no line for {filename} (has: {sorted(sums)})")


def manylinux_platforms(glibc: str, arch: str) -> list[str]:
    """Every platform tag a glibc of that version accepts, newest first (pip's --platform
    takes them one by one; it does not expand perennial manylinux tags downwards)."""
    match = re.match(r"^2\.(\d+)$", str(glibc))
    if not match or int(match[1]) < 17:
        raise WheelhouseError(f"glibc {glibc!r} must be 2.N with N >= 17 (manylinux2014's floor)")
    if not re.match(r"^[a-z0-9_]+$", str(arch)):
        raise WheelhouseError(f"architecture {arch!r} is not a wheel platform suffix")
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(int(match[1]), 16, -1)]
    tags.append(f"manylinux2014_{arch}")
    if arch in ("x86_64", "i686"):
        tags += [f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    return tags
