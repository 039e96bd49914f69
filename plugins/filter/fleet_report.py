"""Filters that render the fleet report (plugins/module_utils/fleet_report.py)."""

from __future__ import annotations

from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils import fleet_report


def fleet_report_host_facts(hosts: list, hostvars: Any) -> list:
    """What the report says about each of `hosts` (in order), read from their variables on
    the control node; hosts the report leaves out are not listed."""
    found = (fleet_report.host_facts(name, hostvars[name]) for name in hosts)
    return [facts for facts in found if facts is not None]


def fleet_report_rows(facts: list) -> list:
    """Rows for the report, one per host, sorted by host name."""
    return sorted((fleet_report.host_row(dict(f)) for f in facts), key=lambda r: r["host"])


def fleet_report_unplaced(facts: list) -> list:
    """`host: reason` lines for hosts without a tier."""
    return fleet_report.unplaced([dict(f) for f in facts])


class FilterModule:
    """Fleet report filters."""

    def filters(self):
        return {
            "fleet_report_host_facts": fleet_report_host_facts,
            "fleet_report_rows": fleet_report_rows,
            "fleet_report_serving": fleet_report.combine_serving,
            "fleet_report_unplaced": fleet_report_unplaced,
            "fleet_report_text": fleet_report.text_table,
            "fleet_report_markdown": fleet_report.markdown,
            "fleet_report_html": fleet_report.html_document,
        }
