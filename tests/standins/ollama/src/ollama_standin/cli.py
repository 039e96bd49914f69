"""The `ollama` command line (cmd/cmd.go, cobra): commands, flags, output and exit codes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import envconfig, names, version
from .client import Client, ClientError, StatusError
from .goformat import display_width, human_bytes, human_number, human_time, render_table
from .gojson import format_duration, parse_duration
from .progress import Bar, Progress, Spinner


class CLIError(Exception):
    """Printed as `Error: <message>`; exit status 1."""


# ------------------------------------------------------------------------- parsing


@dataclass
class Command:
    name: str
    aliases: tuple[str, ...]
    run: Callable[[list[str], dict[str, Any]], None]
    bool_flags: dict[str, str] = field(default_factory=dict)  # long -> short
    str_flags: dict[str, str] = field(default_factory=dict)
    args: tuple[int, int | None] = (0, None)  # min, max
    heartbeat: bool = True
    optional_value: dict[str, str] = field(default_factory=dict)  # flag -> value when bare


def _args_error(cmd: Command, count: int) -> str:
    low, high = cmd.args
    if low == high:
        return f"accepts {low} arg(s), received {count}"
    if high is None:
        return f"requires at least {low} arg(s), only received {count}"
    return f"accepts between {low} and {high} arg(s), received {count}"


def parse_flags(cmd: Command, argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    shorts = {short: long for long, short in {**cmd.bool_flags, **cmd.str_flags}.items() if short}
    flags: dict[str, Any] = {}
    args: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            args.extend(argv[i:])
            break
        if arg.startswith("--") and len(arg) > 2:
            name, has_value, value = arg[2:].partition("=")
        elif arg.startswith("-") and len(arg) > 1:
            short = arg[1]
            if short not in shorts:
                raise CLIError(f"unknown shorthand flag: '{short}' in {arg}")
            name = shorts[short]
            rest = arg[2:]
            has_value, value = (True, rest.lstrip("=")) if rest else (False, "")
        else:
            args.append(arg)
            continue
        if name in ("help",):
            flags["help"] = True
            continue
        if name in cmd.bool_flags:
            if has_value:
                if value in ("1", "t", "T", "true", "TRUE", "True"):
                    flags[name] = True
                elif value in ("0", "f", "F", "false", "FALSE", "False"):
                    flags[name] = False
                else:
                    raise CLIError(
                        f'invalid argument "{value}" for "--{name}" flag: '
                        f'strconv.ParseBool: parsing "{value}": invalid syntax'
                    )
            else:
                flags[name] = True
        elif name in cmd.str_flags:
            if not has_value:
                if name in cmd.optional_value:
                    flags[name] = cmd.optional_value[name]
                    continue
                if i >= len(argv):
                    raise CLIError(f"flag needs an argument: --{name}")
                value = argv[i]
                i += 1
            flags[name] = value
        else:
            raise CLIError(f"unknown flag: --{name}")
    return args, flags


# ------------------------------------------------------------------------ commands


def _client() -> Client:
    return Client()


def check_server_heartbeat() -> None:
    client = _client()
    try:
        client.heartbeat()
    except ClientError as exc:
        if " refused" in str(exc) or "could not connect" in str(exc):
            raise CLIError(
                "could not connect to ollama server, run 'ollama serve' to start it"
            ) from exc
        raise CLIError(str(exc)) from exc


def cmd_version() -> None:
    client = _client()
    server_version = ""
    try:
        server_version = client.version()
    except ClientError:
        print("Warning: could not connect to a running Ollama instance")
    if server_version:
        print(f"ollama version is {server_version}")
    if server_version != version.VERSION:
        print(f"Warning: client version is {version.VERSION}")


def cmd_serve(_args: list[str], _flags: dict[str, Any]) -> None:
    from . import server

    code = server.serve()
    if code:
        raise SystemExit(code)


def _load_modelfile_module():
    try:
        from . import _modelfile  # type: ignore[attr-defined]
    except ImportError:  # a development tree: the project's own module
        from ansible_collections.localllm.fleet.plugins.module_utils import modelfile as _modelfile
    return _modelfile


def cmd_create(args: list[str], flags: dict[str, Any]) -> None:
    modelfile_mod = _load_modelfile_module()
    progress = Progress()
    try:
        _create(modelfile_mod, args[0], flags, progress)
    finally:
        progress.stop()


def _create(mf: Any, model: str, flags: dict[str, Any], progress: Progress) -> None:
    name = names.parse(model)
    if not name.valid:
        raise CLIError(f"invalid model name: {model}")
    if flags.get("experimental"):
        raise CLIError("experimental safetensors model creation is not supported by this stand-in")
    filename = flags.get("file") or "Modelfile"
    path = os.path.abspath(filename)
    try:
        os.stat(path)
    except FileNotFoundError:
        text, base_dir = b"FROM .\n", "."
    except OSError as exc:
        raise CLIError(f"stat {path}: {_reason(exc)}") from exc
    else:
        try:
            with open(path, "rb") as handle:
                text = handle.read()
        except OSError as exc:
            raise CLIError(f"open {path}: {_reason(exc)}") from exc
        base_dir = os.path.dirname(path)
    try:
        parsed = mf.parse_bytes(text, validate=False)
    except mf.ModelfileError as exc:
        raise CLIError(str(exc)) from exc
    status = "gathering model components"
    spinner = Spinner(status)
    progress.add(spinner)
    digests: dict[str, str] = {}

    def digest_file(file_path: str) -> str:
        if file_path not in digests:
            from .store import sha256_file

            digests[file_path] = sha256_file(file_path)
        return digests[file_path]

    try:
        request, uploads = mf.create_request(
            parsed,
            model=model,
            base_dir=base_dir,
            digest_file=digest_file,
            quantize=flags.get("quantize") or None,
        )
    except mf.ModelfileError as exc:
        raise CLIError(str(exc)) from exc
    for warning in parsed.warnings:
        print(warning if warning.startswith("warning:") else f"warning: {warning}")
    spinner.stop()
    client = _client()
    for upload in uploads:
        digest = digest_file(upload)
        _upload_blob(client, upload, digest, progress)
    bars: dict[str, Bar] = {}
    state = {"status": status, "spinner": spinner}

    def on_progress(resp: dict) -> None:
        digest = resp.get("digest") or ""
        if digest:
            bar = bars.get(digest)
            if bar is None:
                message = resp.get("status") or f"pulling {digest[7:19]}..."
                bar = Bar(message, int(resp.get("total") or 0), int(resp.get("completed") or 0))
                bars[digest] = bar
                progress.add(bar)
            bar.set(int(resp.get("completed") or 0))
        elif state["status"] != resp.get("status"):
            state["spinner"].stop()
            state["status"] = resp.get("status", "")
            state["spinner"] = Spinner(state["status"])
            progress.add(state["spinner"])

    try:
        client.stream("POST", "/api/create", request, on_progress)
    except ClientError as exc:
        if "path or Modelfile are required" in str(exc):
            raise CLIError(
                "the ollama server must be updated to use `ollama create` with this client"
            ) from exc
        raise CLIError(str(exc)) from exc


def _upload_blob(client: Client, path: str, digest: str, progress: Progress) -> None:
    real = os.path.realpath(path)
    size = os.path.getsize(real) or 1
    spinner = Spinner(f"copying file {digest} 0%")
    progress.add(spinner)
    sent = [0]

    def body() -> Iterator[bytes]:
        with open(real, "rb") as handle:
            while True:
                chunk = handle.read(1 << 20)
                if not chunk:
                    return
                sent[0] += len(chunk)
                spinner.set_message(f"copying file {digest} {int(100 * sent[0] / size)}%")
                yield chunk

    try:
        client.do("POST", f"/api/blobs/{digest}", raw=body())
    except ClientError as exc:
        raise CLIError(str(exc)) from exc
    finally:
        spinner.set_message(f"copying file {digest} 100%")
        spinner.stop()


def cmd_list(args: list[str], _flags: dict[str, Any]) -> None:
    data = _do("GET", "/api/tags")
    rows = []
    for model in data.get("models") or []:
        if args and not model["name"].lower().startswith(args[0].lower()):
            continue
        size = "-" if model.get("remote_model") else human_bytes(int(model.get("size", 0)))
        rows.append(
            [
                model["name"],
                model["digest"][:12],
                size,
                human_time(_parse_time(model.get("modified_at")), "Never"),
            ]
        )
    sys.stdout.write(render_table(rows, ["NAME", "ID", "SIZE", "MODIFIED"]))


def cmd_ps(args: list[str], _flags: dict[str, Any]) -> None:
    data = _do("GET", "/api/ps")
    rows = []
    for model in data.get("models") or []:
        if args and not model["name"].startswith(args[0]):
            continue
        size, vram = int(model.get("size", 0)), int(model.get("size_vram", 0))
        if vram == 0:
            processor = "100% CPU"
        elif vram == size:
            processor = "100% GPU"
        elif vram > size or size == 0:
            processor = "Unknown"
        else:
            cpu = round((size - vram) / size * 100)
            processor = f"{cpu}%/{100 - cpu}% CPU/GPU"
        expires = _parse_time(model.get("expires_at"))
        until = (
            "Stopping..."
            if expires is not None and expires < time.time_ns()
            else human_time(expires, "Never")
        )
        rows.append(
            [
                model["name"],
                model["digest"][:12],
                human_bytes(size),
                processor,
                str(model.get("context_length", 0)),
                until,
            ]
        )
    sys.stdout.write(render_table(rows, ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]))


def _unload(model: str) -> None:
    """loadOrUnloadModel with keep_alive 0 (used by stop and rm)."""
    client = _client()
    progress = Progress()
    progress.add(Spinner(""))
    try:
        client.do("POST", "/api/show", {"model": model})
        client.stream(
            "POST", "/api/generate", {"model": model, "keep_alive": "0s"}, lambda _r: None
        )
    finally:
        progress.stop_and_clear()


def cmd_stop(args: list[str], _flags: dict[str, Any]) -> None:
    try:
        _unload(args[0])
    except ClientError as exc:
        if "not found" in str(exc):
            raise CLIError(f'couldn\'t find model "{args[0]}" to stop') from exc
        raise CLIError(str(exc)) from exc


def cmd_rm(args: list[str], _flags: dict[str, Any]) -> None:
    client = _client()
    for model in args:
        try:
            _unload(model)
        except ClientError as exc:
            if "not found" not in str(exc).lower():
                sys.stderr.write(f"Warning: unable to stop model '{model}'\n")
        try:
            client.do("DELETE", "/api/delete", {"model": "", "name": model})
        except ClientError as exc:
            raise CLIError(str(exc)) from exc
        print(f"deleted '{model}'")


def cmd_cp(args: list[str], _flags: dict[str, Any]) -> None:
    _do("POST", "/api/copy", {"source": args[0], "destination": args[1]})
    print(f"copied '{args[0]}' to '{args[1]}'")


def cmd_show(args: list[str], flags: dict[str, Any]) -> None:
    kinds = [
        k for k in ("license", "modelfile", "parameters", "system", "template") if flags.get(k)
    ]
    if len(kinds) > 1:
        raise CLIError(
            "only one of '--license', '--modelfile', '--parameters', '--system', or "
            "'--template' can be specified"
        )
    resp = _do(
        "POST",
        "/api/show",
        {
            "model": "",
            "system": "",
            "template": "",
            "verbose": bool(flags.get("verbose")),
            "options": None,
            "name": args[0],
        },
    )
    if "image" in (resp.get("capabilities") or []):
        raise CLIError("image generation models are not currently supported")
    if kinds:
        kind = kinds[0]
        if kind in ("license", "modelfile", "parameters"):
            print(resp.get(kind, ""))
        else:
            sys.stdout.write(resp.get(kind, ""))
        return
    sys.stdout.write(_show_info(resp, bool(flags.get("verbose"))))


def _show_info(resp: dict[str, Any], verbose: bool) -> str:
    out: list[str] = []

    def table(header: str, rows: list[list[str]], width: int = 30) -> None:
        out.append(f"  {header}\n")
        out.append(render_table(rows, None, width))
        out.append("\n")

    info = resp.get("model_info")
    details = resp.get("details") or {}
    rows: list[list[str]] = []
    if info is not None:
        arch = (
            info.get("general.architecture")
            if isinstance(info.get("general.architecture"), str)
            else ""
        )
        if arch:
            rows.append(["", "architecture", arch])
        params = details.get("parameter_size") or ""
        if not params and isinstance(info.get("general.parameter_count"), (int, float)):
            params = human_number(int(info["general.parameter_count"]))
        if params:
            rows.append(["", "parameters", params])
        for key, label in (
            ("context_length", "context length"),
            ("embedding_length", "embedding length"),
        ):
            value = info.get(f"{arch}.{key}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append(["", label, _fmt_number(value)])
    else:
        rows += [
            ["", "architecture", details.get("family", "")],
            ["", "parameters", details.get("parameter_size", "")],
        ]
    rows.append(["", "quantization", details.get("quantization_level", "")])
    if resp.get("requires"):
        rows.append(["", "requires", resp["requires"]])
    table("Model", rows)
    if resp.get("capabilities"):
        table("Capabilities", [["", c] for c in resp["capabilities"]])
    if resp.get("parameters"):
        table(
            "Parameters", [["", *line.split()] for line in resp["parameters"].splitlines() if line]
        )
    if info is not None and verbose:
        meta = [["", key, _fmt_meta(info[key])] for key in sorted(info)]
        table("Metadata", meta)
    if resp.get("tensors") and verbose:
        table(
            "Tensors",
            [
                ["", t["name"], t["type"], "[" + " ".join(str(s) for s in t["shape"]) + "]"]
                for t in resp["tensors"]
            ],
        )

    def head(text: str) -> list[list[str]]:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        rows = [["", line] for line in lines[:2]]
        if len(lines) > 2:
            rows.append(["", "..."])
        return rows

    if resp.get("system"):
        table("System", head(resp["system"]), 100)
    if resp.get("license"):
        table("License", head(resp["license"]), 100)
    return "".join(out)


def _fmt_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _fmt_meta(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        from .gojson import format_float_g

        return format_float_g(float(value))
    if isinstance(value, list):
        shown, width = 0, 1
        for i, item in enumerate(value):
            w = display_width(str(item)) + (2 if i else 0)
            if width + w > 10 and i > 0:
                break
            width += w
            shown += 1
        text = "[" + " ".join(str(v) for v in value[:shown])
        return text + (f" ...+{len(value) - shown} more]" if shown < len(value) else "]")
    if value is None:
        return "<nil>"
    return type(value).__name__


def cmd_pull(args: list[str], flags: dict[str, Any]) -> None:
    _pull_with_progress(_client(), args[0], bool(flags.get("insecure")))


def _pull_with_progress(client: Client, model: str, insecure: bool) -> None:
    progress = Progress()
    bars: dict[str, Bar] = {}
    state: dict[str, Any] = {"status": "", "spinner": None}

    def on_progress(resp: dict) -> None:
        digest = resp.get("digest") or ""
        if digest:
            if not resp.get("completed"):
                return
            if state["spinner"] is not None:
                state["spinner"].stop()
            bar = bars.get(digest)
            if bar is None:
                short = digest[7:].strip()[:12] if digest.startswith("sha256:") else digest.strip()
                bar = Bar(
                    f"pulling {short}:",
                    int(resp.get("total") or 0),
                    int(resp.get("completed") or 0),
                )
                bars[digest] = bar
                progress.add(bar)
            bar.set(int(resp.get("completed") or 0))
        elif state["status"] != resp.get("status"):
            if state["spinner"] is not None:
                state["spinner"].stop()
            state["status"] = resp.get("status", "")
            state["spinner"] = Spinner(state["status"])
            progress.add(state["spinner"])

    try:
        client.stream(
            "POST",
            "/api/pull",
            {"model": "", "insecure": insecure, "username": "", "password": "", "name": model},
            on_progress,
        )
    except ClientError as exc:
        raise CLIError(str(exc)) from exc
    finally:
        progress.stop()


def cmd_push(_args: list[str], _flags: dict[str, Any]) -> None:
    raise CLIError("pushing models is not supported by this stand-in")


def cmd_run(args: list[str], flags: dict[str, Any]) -> None:
    client = _client()
    model = args[0]
    think: Any = None
    if "think" in flags:
        value = flags["think"]
        if value in ("", "true"):
            think = True
        elif value == "false":
            think = False
        elif value in ("high", "medium", "low", "max"):
            think = value
        else:
            raise CLIError(
                f'invalid value for --think: "{value}" '
                "(must be true, false, high, medium, low, or max)"
            )
    keep_alive = None
    if flags.get("keepalive"):
        try:
            keep_alive = format_duration(parse_duration(flags["keepalive"]))
        except ValueError as exc:
            raise CLIError(str(exc)) from exc
    prompts = args[1:]
    if not sys.stdin.isatty():
        data = sys.stdin.read()
        if data:
            prompts = [data, *prompts]
    prompt = " ".join(prompts)
    if not prompts and sys.stdin.isatty() and sys.stdout.isatty():
        raise CLIError("the interactive chat is not supported by this stand-in; pass a prompt")
    try:
        info = client.do("POST", "/api/show", {"model": model})
    except StatusError as exc:
        if exc.code != 404:
            raise CLIError(str(exc)) from exc
        _pull_with_progress(client, model, bool(flags.get("insecure")))
        try:
            info = client.do("POST", "/api/show", {"model": model})
        except ClientError as exc2:
            raise CLIError(str(exc2)) from exc2
    except ClientError as exc:
        raise CLIError(str(exc)) from exc
    caps = info.get("capabilities") or []
    if "think" not in flags and "thinking" in caps:
        think = True
    if "embedding" in caps:
        raise CLIError("embedding models are not supported by this stand-in")
    wrap = not flags.get("nowordwrap")
    hide = bool(flags.get("hidethinking"))
    request: dict[str, Any] = {"model": model, "prompt": prompt, "options": {}}
    if flags.get("format"):
        request["format"] = "json" if flags["format"] == "json" else flags["format"]
    if keep_alive is not None:
        request["keep_alive"] = keep_alive
    if think is not None:
        request["think"] = think
    progress = Progress()
    progress.add(Spinner(""))
    display = _Display(wrap)
    state = {"opened": False, "closed": False, "thinking": "", "latest": {}}

    def on_resp(resp: dict) -> None:
        state["latest"] = resp
        content = resp.get("response", "")
        if content or not hide:
            progress.stop_and_clear()
        thinking = resp.get("thinking", "")
        if thinking and not hide:
            if not state["opened"]:
                sys.stdout.write("Thinking...\n")
                state["opened"], state["closed"] = True, False
            state["thinking"] += thinking
            display.write(thinking)
        if state["opened"] and not state["closed"] and content:
            if not state["thinking"].endswith("\n"):
                sys.stdout.write("\n")
            sys.stdout.write("...done thinking.\n\n")
            state["opened"], state["closed"] = False, True
            display.reset()
        display.write(content)
        sys.stdout.flush()

    try:
        client.stream("POST", "/api/generate", request, on_resp)
    except ClientError as exc:
        raise CLIError(str(exc)) from exc
    finally:
        progress.stop_and_clear()
    if prompt:
        sys.stdout.write("\n\n")
    latest = state["latest"]
    if latest.get("done") and flags.get("verbose"):
        _summary(latest)


class _Display:
    """displayResponse: word wrap at the terminal width (80 when not a terminal)."""

    def __init__(self, wrap: bool) -> None:
        self.wrap = wrap
        self.line = 0
        self.word = ""

    def reset(self) -> None:
        self.line, self.word = 0, ""

    def write(self, content: str) -> None:
        width = os.get_terminal_size().columns if sys.stdout.isatty() else 80
        out = sys.stdout
        if not (self.wrap and width >= 10):
            out.write(self.word + content)
            self.word = ""
            return
        for ch in content:
            if self.line + 1 > width - 5:
                if display_width(self.word) > width - 10:
                    out.write(self.word + ch)
                    self.word, self.line = "", 0
                    continue
                back = display_width(self.word)
                if back > 0:
                    out.write(f"\x1b[{back}D")
                out.write("\x1b[K\n" + self.word + ch)
                self.line = display_width(self.word) + display_width(ch)
            else:
                out.write(ch)
                self.line += display_width(ch)
                if display_width(ch) >= 2 or ch in " \t":
                    self.word = ""
                elif ch in "\n\r":
                    self.line, self.word = 0, ""
                else:
                    self.word += ch


def _summary(resp: dict) -> None:
    err = sys.stderr
    if resp.get("total_duration"):
        err.write(f"total duration:       {format_duration(resp['total_duration'])}\n")
    if resp.get("load_duration"):
        err.write(f"load duration:        {format_duration(resp['load_duration'])}\n")
    if resp.get("prompt_eval_count"):
        err.write(f"prompt eval count:    {resp['prompt_eval_count']} token(s)\n")
    if resp.get("prompt_eval_duration"):
        err.write(f"prompt eval duration: {format_duration(resp['prompt_eval_duration'])}\n")
        err.write(
            f"prompt eval rate:     {_rate(resp, 'prompt_eval_count', 'prompt_eval_duration')}\n"
        )
    if resp.get("eval_count"):
        err.write(f"eval count:           {resp['eval_count']} token(s)\n")
    if resp.get("eval_duration"):
        err.write(f"eval duration:        {format_duration(resp['eval_duration'])}\n")
        err.write(f"eval rate:            {_rate(resp, 'eval_count', 'eval_duration')}\n")


def _rate(resp: dict, count: str, duration: str) -> str:
    return f"{resp.get(count, 0) / (resp[duration] / 1e9):.2f} tokens/s"


def _do(method: str, path: str, data: Any = None) -> Any:
    try:
        return _client().do(method, path, data) or {}
    except ClientError as exc:
        raise CLIError(str(exc)) from exc


def _parse_time(text: str | None) -> int | None:
    """RFC 3339 (nanoseconds) back to epoch ns."""
    if not text:
        return None
    import calendar
    import re

    m = re.match(
        r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})", text
    )
    if not m:
        return None
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if year < 1 or year > 9999:
        return None
    frac = int((m.group(7) or "0").ljust(9, "0")[:9])
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = m.group(8)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * 1_000_000_000 + frac


def _reason(exc: OSError) -> str:
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    return text[:1].lower() + text[1:]


COMMANDS = [
    Command("serve", ("start",), cmd_serve, args=(0, 0), heartbeat=False),
    Command(
        "create",
        (),
        cmd_create,
        {"experimental": ""},
        {"file": "f", "quantize": "q", "draft-quantize": ""},
        (1, 1),
    ),
    Command(
        "show",
        (),
        cmd_show,
        {
            "license": "",
            "modelfile": "",
            "parameters": "",
            "template": "",
            "system": "",
            "verbose": "v",
        },
        {},
        (1, 1),
    ),
    Command(
        "run",
        (),
        cmd_run,
        {"verbose": "", "insecure": "", "nowordwrap": "", "hidethinking": "", "truncate": ""},
        {"keepalive": "", "format": "", "think": "", "dimensions": ""},
        (1, None),
        optional_value={"think": "true"},
    ),
    Command("stop", (), cmd_stop, args=(1, 1)),
    Command("pull", (), cmd_pull, {"insecure": ""}, {}, (1, 1)),
    Command("push", (), cmd_push, {"insecure": ""}, {}, (1, 1)),
    Command("list", ("ls",), cmd_list),
    Command("ps", (), cmd_ps),
    Command("cp", (), cmd_cp, args=(2, 2)),
    Command("rm", (), cmd_rm, args=(1, None)),
]

USAGE = """Large language model runner

Usage:
  ollama [flags]
  ollama [command]

Available Commands:
  serve       Start Ollama
  create      Create a model
  show        Show information for a model
  run         Run a model
  stop        Stop a running model
  pull        Pull a model from a registry
  push        Push a model to a registry
  list        List models
  ps          List running models
  cp          Copy a model
  rm          Remove a model
  help        Help about any command

Flags:
  -h, --help      help for ollama
  -v, --version   Show version information

Use "ollama [command] --help" for more information about a command.
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except CLIError as exc:
        sys.stdout.flush()
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


def _main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        if any(a in ("-v", "--version") for a in argv):
            cmd_version()
            return 0
        if any(a in ("-h", "--help") for a in argv) or not argv:
            sys.stdout.write(USAGE)
            return 0
        flag = argv[0]
        raise CLIError(
            f"unknown flag: {flag}"
            if flag.startswith("--")
            else f"unknown shorthand flag: '{flag[1:2]}' in {flag}"
        )
    name = argv[0]
    if name == "help":
        sys.stdout.write(USAGE)
        return 0
    command = next((c for c in COMMANDS if c.name == name or name in c.aliases), None)
    if command is None:
        raise CLIError(f'unknown command "{name}" for "ollama"\nRun \'ollama --help\' for usage.')
    args, flags = parse_flags(command, argv[1:])
    if flags.get("help"):
        sys.stdout.write(USAGE)
        return 0
    low, high = command.args
    if len(args) < low or (high is not None and len(args) > high):
        raise CLIError(_args_error(command, len(args)))
    for warning in envconfig.take_warnings():
        del warning
    if command.heartbeat:
        check_server_heartbeat()
    command.run(args, flags)
    return 0
