"""The environment Ollama reads (envconfig/config.go), parsed the same way."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from .gojson import MAX_DURATION, parse_duration


def var(key: str) -> str:
    """envconfig.Var: trimmed of spaces, then of quotes."""
    return os.environ.get(key, "").strip().strip("\"'")


def parse_bool(text: str) -> bool:
    """strconv.ParseBool; raises ValueError like Go's error."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(text)


def env_bool(key: str, default: bool = False) -> bool:
    """envconfig.BoolWithDefault: unset -> default, unparseable -> true."""
    text = var(key)
    if not text:
        return default
    try:
        return parse_bool(text)
    except ValueError:
        return True


def env_uint(key: str, default: int) -> int:
    text = var(key)
    if text:
        if text.isdigit():
            return int(text)
        warn(
            f'msg="invalid environment variable, using default" key={key} value={text} '
            f"default={default}"
        )
    return default


_warnings: list[str] = []


def warn(message: str) -> None:
    _warnings.append(message)


def take_warnings() -> list[str]:
    out = list(_warnings)
    _warnings.clear()
    return out


def split_host_port(hostport: str) -> tuple[str, str]:
    """net.SplitHostPort (raises ValueError on the same inputs)."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError("missing ']' in address")
        rest = hostport[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError("missing port in address")
        return hostport[1:end], rest[1:]
    count = hostport.count(":")
    if count == 0:
        raise ValueError("missing port in address")
    if count > 1:
        raise ValueError("too many colons in address")
    host, port = hostport.split(":")
    return host, port


def join_host_port(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class HostURL:
    scheme: str
    host: str  # hostname without brackets
    port: str
    path: str = ""

    @property
    def hostport(self) -> str:
        return join_host_port(self.host, self.port)

    def url(self) -> str:
        return f"{self.scheme}://{self.hostport}" + (f"/{self.path}" if self.path else "")


def host() -> HostURL:
    """envconfig.Host: OLLAMA_HOST as [scheme://]host[:port][/path]."""
    default_port = "11434"
    text = var("OLLAMA_HOST")
    if "://" in text:
        scheme, hostport = text.split("://", 1)
        if scheme == "http":
            default_port = "80"
        elif scheme == "https":
            default_port = "443"
    else:
        scheme, hostport = "http", text
        if text == "ollama.com":
            scheme, hostport = "https", "ollama.com:443"
    hostport, _, path = hostport.partition("/")
    try:
        hostname, port = split_host_port(hostport)
    except ValueError:
        hostname, port = "127.0.0.1", default_port
        candidate = hostport.strip("[]")
        try:
            hostname = str(ipaddress.ip_address(candidate))
        except ValueError:
            if hostport:
                hostname = hostport
    try:
        number = int(port)
        if number > 65535 or number < 0:
            raise ValueError
    except ValueError:
        warn(f'msg="invalid port, using default" port={port} default={default_port}')
        port = default_port
    return HostURL(scheme=scheme, host=hostname, port=port, path=path)


def connectable_host() -> HostURL:
    """Host() with 0.0.0.0 / :: replaced by the loopback address."""
    url = host()
    try:
        ip = ipaddress.ip_address(url.host)
    except ValueError:
        return url
    if ip.is_unspecified:
        return HostURL(url.scheme, "127.0.0.1" if ip.version == 4 else "::1", url.port, url.path)
    return url


def models() -> str:
    text = var("OLLAMA_MODELS")
    if text:
        return text
    return os.path.join(os.path.expanduser("~"), ".ollama", "models")


def _duration_env(key: str, default_ns: int) -> int:
    text = var(key)
    if not text:
        return default_ns
    try:
        return parse_duration(text)
    except ValueError:
        try:
            return int(text) * 1_000_000_000
        except ValueError:
            return default_ns


def keep_alive_ns() -> int:
    """OLLAMA_KEEP_ALIVE: Go duration or seconds; negative means forever."""
    value = _duration_env("OLLAMA_KEEP_ALIVE", 5 * 60 * 1_000_000_000)
    return MAX_DURATION if value < 0 else value


def load_timeout_ns() -> int:
    value = _duration_env("OLLAMA_LOAD_TIMEOUT", 5 * 60 * 1_000_000_000)
    return MAX_DURATION if value <= 0 else value


def allowed_origins() -> list[str]:
    origins = [o for o in var("OLLAMA_ORIGINS").split(",") if o] if var("OLLAMA_ORIGINS") else []
    for origin in ("localhost", "127.0.0.1", "0.0.0.0"):  # noqa: S104 - upstream's list
        origins += [
            f"http://{origin}",
            f"https://{origin}",
            f"http://{join_host_port(origin, '*')}",
            f"https://{join_host_port(origin, '*')}",
        ]
    origins += ["app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*"]
    return origins


def log_level() -> int:
    """OLLAMA_DEBUG: 0 info, 1/true debug (-4), 2 trace (-8)."""
    text = var("OLLAMA_DEBUG")
    if not text:
        return 0
    try:
        if parse_bool(text):
            return -4
    except ValueError:
        pass
    try:
        return int(text) * -4
    except ValueError:
        return 0


def no_prune() -> bool:
    return env_bool("OLLAMA_NOPRUNE")


def num_parallel() -> int:
    return env_uint("OLLAMA_NUM_PARALLEL", 1)


def max_loaded_models() -> int:
    return env_uint("OLLAMA_MAX_LOADED_MODELS", 0)


def max_queue() -> int:
    return env_uint("OLLAMA_MAX_QUEUE", 512)


def context_length() -> int:
    return env_uint("OLLAMA_CONTEXT_LENGTH", 0)


def gpu_overhead() -> int:
    return env_uint("OLLAMA_GPU_OVERHEAD", 0)


def values() -> dict[str, str]:
    """The `server config env` map logged at start (a subset is enough for humans)."""
    url = host()
    return {
        "OLLAMA_CONTEXT_LENGTH": str(context_length()),
        "OLLAMA_DEBUG": {0: "INFO", -4: "DEBUG", -8: "DEBUG-4"}.get(log_level(), str(log_level())),
        "OLLAMA_FLASH_ATTENTION": str(env_bool("OLLAMA_FLASH_ATTENTION", False)).lower(),
        "OLLAMA_GPU_OVERHEAD": str(gpu_overhead()),
        "OLLAMA_HOST": url.url(),
        "OLLAMA_KEEP_ALIVE": _fmt_keepalive(keep_alive_ns()),
        "OLLAMA_KV_CACHE_TYPE": var("OLLAMA_KV_CACHE_TYPE"),
        "OLLAMA_MAX_LOADED_MODELS": str(max_loaded_models()),
        "OLLAMA_MAX_QUEUE": str(max_queue()),
        "OLLAMA_MODELS": models(),
        "OLLAMA_NOPRUNE": str(no_prune()).lower(),
        "OLLAMA_NUM_PARALLEL": str(num_parallel()),
        "OLLAMA_ORIGINS": "[" + " ".join(allowed_origins()) + "]",
        "OLLAMA_SCHED_SPREAD": str(env_bool("OLLAMA_SCHED_SPREAD")).lower(),
        "CUDA_VISIBLE_DEVICES": var("CUDA_VISIBLE_DEVICES"),
    }


def _fmt_keepalive(ns: int) -> str:
    from .gojson import format_duration

    return format_duration(ns)
