# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""The fleet report: one row per host, rendered for a terminal, Markdown and HTML.

Rows are plain dicts built by playbooks/report.yml from each host's gpu_tier variables,
its Ollama (version, models) and its smoke test; rendering is pure so it can be tested.
"""

from __future__ import annotations

import html
import time
from typing import Any

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.localllm.fleet.plugins.module_utils.models_plan import (
    KEPT_LOADED_SECONDS,
    expires_in,
    placement,
)
from ansible_collections.localllm.fleet.plugins.module_utils.tier_policy._classify import (
    STATUS_DRIVER_NEEDED,
    STATUS_UNREACHABLE,
)

COLUMNS = (
    ("host", "Host"),
    ("gpus", "GPUs"),
    ("tier", "Tier"),
    ("models", "Models"),
    ("kept", "Kept loaded"),
    ("gpu_percent", "GPU %"),
    ("ollama", "Ollama"),
    ("health", "Health"),
    ("tokens_per_second", "Tokens/s"),
    ("smoke_test", "Smoke test"),
)


def gpu_summary(devices: list[dict[str, Any]] | None, count: Any = None) -> str:
    """`8 x NVIDIA H100 80GB HBM3`, `1 x Tesla T4 + 1 x NVIDIA L4`, or `none`."""
    if not devices:
        return "none" if not count else f"{count} GPU(s)"
    groups: dict[str, int] = {}
    for device in devices:
        name = str(device.get("name") or "unknown GPU")
        groups[name] = groups.get(name, 0) + 1
    return " + ".join(f"{n} x {name}" for name, n in groups.items())


def _loaded_cells(facts: dict[str, Any], now: float) -> tuple[str, str]:
    """(kept loaded, GPU %) from what /api/ps showed (report.yml's `running`), else from the
    smoke test's results: the models that never expire (keep_alive -1), and each loaded
    model's share in VRAM (100: all on the GPUs, 0: on the CPU)."""
    running = [r for r in facts.get("running") or [] if isinstance(r, dict) and r.get("name")]
    if running:
        kept = [str(r["name"]) for r in running if (expires_in(r, now) or 0) > KEPT_LOADED_SECONDS]
        shares = [
            (str(r["name"]), placement(r.get("size", 0), r.get("size_vram", 0))) for r in running
        ]
    else:
        smoke = [s for s in facts.get("smoke") or [] if isinstance(s, dict)]
        kept = [str(s.get("model")) for s in smoke if s.get("kept_loaded")]
        shares = [
            (str(s.get("model")), {"gpu_percent": s.get("gpu_percent")})
            for s in smoke
            if s.get("processor")
        ]
    percent = [
        (f"{name}: " if len(shares) > 1 else "")
        + ("?" if where["gpu_percent"] is None else f"{where['gpu_percent']}%")
        for name, where in shares
    ]
    return ", ".join(kept) or "-", ", ".join(percent) or "-"


def host_facts(name: str, variables: Any) -> dict[str, Any] | None:
    """What the report says about one host, from its variables (the inventory's, gpu_tier's,
    and what this run registered: `__ollama_models_info` from the ollama_models role's
    info.yml, the smoke test's results). None for a host the report leaves out
    (`gpu_tier_probe: false`). Never the prompts or answers: only model names, versions and
    the smoke test's figures."""
    # As report.yml's first play reads the flag (`| bool`: Ansible's lenient conversion).
    if not boolean(variables.get("gpu_tier_probe", True), strict=False):
        return None
    info = variables.get("__ollama_models_info") or {"skipped": True}
    asked = not info.get("skipped", False)
    served = asked and info.get("version") is not None
    namespace = variables.get("ollama_models_namespace", "fleet")
    models = [m.get("name", "") for m in info.get("models") or []] if served else []
    return {
        "host": name,
        "gpu_devices": variables.get("gpu_devices") or [],
        "gpu_count": variables.get("gpu_count"),
        "tier": variables.get("gpu_tier"),
        "status": variables.get("gpu_probe_status"),
        "reason": variables.get("gpu_tier_reason"),
        "models": [m for m in models if str(m).startswith(f"{namespace}/")],
        "running": list(info.get("running") or []) if served else [],
        "ollama_version": info.get("version") if served else None,
        "ollama_error": str(info.get("msg", "no answer")) if asked and not served else "",
        **_smoke_facts(variables.get("ollama_models_smoke_results"), info if served else {}),
    }


def _smoke_facts(this_run: Any, info: dict[str, Any]) -> dict[str, Any]:
    """Which smoke test a row shows: the last one that passed, from its stamp (what info.yml
    read), unless this run's failed; this run's when there is no stamp. So the report of a
    run that tested nothing (a no-op, report.yml alone) shows the same figures as the run
    that tested, and a converged fleet's report does not change from run to run."""
    results = [r for r in this_run or [] if isinstance(r, dict)]
    last = info.get("smoke")
    if isinstance(last, dict) and all(r.get("ok") for r in results):
        return {"smoke": list(last.get("results") or []), "smoke_tested": last.get("timestamp")}
    return {"smoke": results, "smoke_tested": None}


def host_row(facts: dict[str, Any], now: float | None = None) -> dict[str, str]:
    """One row from what report.yml gathered about a host (missing pieces shown as such)."""
    smoke = facts.get("smoke") or []
    kept, gpu_percent = _loaded_cells(facts, time.time() if now is None else now)
    rates = [s.get("tokens_per_second") for s in smoke if s.get("tokens_per_second")]
    failed = [s.get("model") for s in smoke if not s.get("ok")]
    version = facts.get("ollama_version")
    error = facts.get("ollama_error")
    if not facts.get("tier") and facts.get("status") in _UNPLACED:
        health = "not served: " + _UNPLACED[facts["status"]]
    elif error:
        health = f"DOWN: {error}"
    elif failed:
        health = "FAILED: " + ", ".join(str(m) for m in failed)
    elif smoke:
        health = "ok"
    else:
        health = "up (not smoke-tested)" if version else "n/a"
    tier = facts.get("tier") or "-"
    tested = facts.get("smoke_tested")
    if isinstance(tested, int) and not isinstance(tested, bool):
        smoke_test = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(tested))
    else:
        smoke_test = "this run" if smoke else "-"
    return {
        "host": str(facts.get("host", "?")),
        "gpus": gpu_summary(facts.get("gpu_devices"), facts.get("gpu_count")),
        "tier": tier,
        "models": ", ".join(facts.get("models") or []) or "-",
        "kept": kept,
        "gpu_percent": gpu_percent,
        "ollama": str(version or "-"),
        "health": health,
        "tokens_per_second": ", ".join(f"{r:.1f}" for r in rates) if rates else "-",
        "smoke_test": smoke_test,
    }


_UNPLACED = {
    STATUS_UNREACHABLE: "could not be read (see below)",
    STATUS_DRIVER_NEEDED: "waits for a working driver (see below)",
}


def unplaced(facts: list[dict[str, Any]]) -> list[str]:
    """`host: reason` for every host that got no tier, for the lines under the table."""
    return sorted(
        f"{f.get('host')}: {f.get('reason') or 'no reason recorded'}"
        for f in facts
        if not f.get("tier") and f.get("status") in _UNPLACED
    )


def serving_summary(serving: dict[str, Any] | None) -> dict[str, Any] | None:
    """The serving layer's part of the report, normalised (None when there is none).

    `serving`: `endpoints` (URLs), `models` (each `name`, `hosts`, optional `alias_of`),
    `excluded` (`host: reason` lines) and `clients` (key names; never keys).
    """
    if not serving or not (serving.get("endpoints") or serving.get("models")):
        return None
    models = []
    for model in serving.get("models") or []:
        hosts = [str(h) for h in model.get("hosts") or []]
        alias = model.get("alias_of")
        models.append(
            {
                "name": str(model.get("name", "?")),
                "hosts": ", ".join(hosts) or "none healthy",
                "alias_of": str(alias) if alias else "",
            }
        )
    return {
        "endpoints": [str(e) for e in serving.get("endpoints") or []],
        "models": models,
        "excluded": [str(e) for e in serving.get("excluded") or []],
        "clients": sorted(str(c) for c in serving.get("clients") or []),
    }


def combine_serving(sections: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """One serving section from the gateways' (fleet_gateway_serving of each gateway host):
    every gateway's endpoint; models, exclusions and clients from the gateways in order,
    each listed once (gateways of one inventory plan the same fleet)."""
    sections = [dict(s) for s in sections or [] if s]
    if not sections:
        return None
    combined: dict[str, Any] = {"endpoints": [], "models": [], "excluded": [], "clients": []}
    seen_models: set[str] = set()
    for section in sections:
        for key in ("endpoints", "excluded", "clients"):
            for value in section.get(key) or []:
                if value not in combined[key]:
                    combined[key].append(value)
        for model in section.get("models") or []:
            name = str(model.get("name", "?"))
            if name not in seen_models:
                seen_models.add(name)
                combined["models"].append(model)
    return combined


def _serving_text(serving: dict[str, Any]) -> list[str]:
    lines = ["", "Serving (OpenAI- and DeepSeek-compatible; every request needs a client key):"]
    lines += [f"  endpoint: {e}" for e in serving["endpoints"]] or ["  endpoint: none (no gateway)"]
    width = max([len(m["name"]) for m in serving["models"]] + [5])
    for model in serving["models"]:
        served = f"= {model['alias_of']}" if model["alias_of"] else model["hosts"]
        lines.append(f"  {model['name'].ljust(width)}  {served}")
    if serving["excluded"]:
        lines.append("  left out:")
        lines += [f"    {e}" for e in serving["excluded"]]
    lines.append(f"  client keys: {', '.join(serving['clients']) or 'none'}")
    return lines


def _printable(text: object) -> str:
    """Host-provided text without control characters (a GPU name or an error message with an
    escape sequence would otherwise act on the operator's terminal)."""
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in str(text))


def _cells(row: dict[str, str]) -> list[str]:
    return [_printable(row.get(key, "")) for key, _ in COLUMNS]


def text_table(
    rows: list[dict[str, str]],
    notes: list[str] | None = None,
    details: list[str] | None = None,
    serving: dict[str, Any] | None = None,
) -> str:
    """A fixed-width table for the terminal, with notes above and details below."""
    header = [title for _, title in COLUMNS]
    body = [_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width)
            for cell, width in zip(line, widths)  # noqa: B905 - one width per column; 3.9 lacks strict=
        ).rstrip()
        for line in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    above = [*map(_printable, notes or []), ""] if notes else []
    below = (
        ["", "Hosts without a tier:", *(f"  {_printable(d)}" for d in details)] if details else []
    )
    summary = serving_summary(serving)
    if summary:
        below += [_printable(line) for line in _serving_text(summary)]
    return "\n".join([*above, *lines, *below])


def _md(cell: str) -> str:
    return _printable(cell.replace("|", "\\|").replace("\n", " "))


def markdown(
    rows: list[dict[str, str]],
    title: str,
    notes: list[str] | None = None,
    details: list[str] | None = None,
    serving: dict[str, Any] | None = None,
) -> str:
    """The report as a Markdown document."""
    lines = [f"# {_printable(title)}", ""]
    lines += [f"> {_printable(note)}" for note in notes or []]
    if notes:
        lines.append("")
    lines.append("| " + " | ".join(t for _, t in COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    lines += ["| " + " | ".join(_md(c) for c in _cells(row)) + " |" for row in rows]
    if details:
        lines += ["", "## Hosts without a tier", ""] + [f"- {_md(d)}" for d in details]
    summary = serving_summary(serving)
    if summary:
        lines += ["", "## Serving", ""]
        lines += [f"- Endpoint: `{_md(e)}`" for e in summary["endpoints"]]
        lines += ["", "| Model | Hosts |", "|---|---|"]
        for model in summary["models"]:
            served = f"alias of {model['alias_of']}" if model["alias_of"] else model["hosts"]
            lines.append(f"| {_md(model['name'])} | {_md(served)} |")
        if summary["excluded"]:
            lines += ["", "Left out of serving:", ""] + [f"- {_md(e)}" for e in summary["excluded"]]
        lines += ["", f"Client keys: {_md(', '.join(summary['clients']) or 'none')}"]
    return "\n".join(lines) + "\n"


def html_document(
    rows: list[dict[str, str]],
    title: str,
    notes: list[str] | None = None,
    details: list[str] | None = None,
    serving: dict[str, Any] | None = None,
) -> str:
    """The report as a self-contained HTML page (no scripts, no external resources)."""
    esc = html.escape
    head = "".join(f"<th>{esc(t)}</th>" for _, t in COLUMNS)
    body = []
    for row in rows:
        status = "ok" if row.get("health") == "ok" else "bad"
        cells = "".join(f"<td>{esc(c)}</td>" for c in _cells(row))
        body.append(f'<tr class="{status}">{cells}</tr>')
    note_html = "".join(f"<p class=note>{esc(n)}</p>" for n in notes or [])
    summary = serving_summary(serving)
    serving_html = ""
    if summary:
        served = "".join(
            f"<tr><td>{esc(m['name'])}</td><td>"
            f"{esc('alias of ' + m['alias_of'] if m['alias_of'] else m['hosts'])}</td></tr>"
            for m in summary["models"]
        )
        serving_html = (
            "<h2>Serving</h2>"
            + "".join(f"<p>Endpoint: <code>{esc(e)}</code></p>" for e in summary["endpoints"])
            + f"<table><thead><tr><th>Model</th><th>Hosts</th></tr></thead><tbody>{served}"
            + "</tbody></table>"
            + (
                "<p>Left out of serving:</p><ul>"
                + "".join(f"<li>{esc(e)}</li>" for e in summary["excluded"])
                + "</ul>"
                if summary["excluded"]
                else ""
            )
            + f"<p>Client keys: {esc(', '.join(summary['clients']) or 'none')}</p>"
        )
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{esc(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "th,td{border:1px solid #ccc;padding:.4em .7em;text-align:left}"
        "th{background:#f0f0f0}tr.bad td{background:#fde8e8}.note{color:#555}"
        f"</style></head><body><h1>{esc(title)}</h1>{note_html}"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        + (
            "<h2>Hosts without a tier</h2><ul>"
            + "".join(f"<li>{esc(d)}</li>" for d in details)
            + "</ul>"
            if details
            else ""
        )
        + serving_html
        + "</body></html>\n"
    )
