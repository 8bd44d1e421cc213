"""Plain text for terminals and mailing-list replies: ASCII, at most 72 columns."""

from __future__ import annotations

import json
import textwrap

from gmemlab.invariants import PROPERTIES

WIDTH = 72


def wrap(text: str, indent: str = "", width: int = WIDTH) -> str:
    return textwrap.fill(text, width=width, initial_indent=indent, subsequent_indent=indent,
                         break_long_words=True, break_on_hyphens=False)


def _j(obj) -> str:
    return json.dumps(obj, separators=(", ", ": "))


def check_report_text(report, header: dict) -> str:
    """The human form of check-trace's verdict."""
    cfg = report.config
    lines = [f"{report.path}: {report.events} events, replayed as {cfg.label()}"]
    d = report.divergence
    if d is None:
        lines.append("conforms: every observed outcome matches the model")
    else:
        lines.append(f"diverges at line {d['line']} ({d['op']}):")
        lines.append(f"  expected  {_j(d['expected'])}")
        lines.append(f"  predicted {_j(d['predicted'])}")
    if report.violations:
        lines.append("invariants violated:")
        for v in report.violations:
            claim = PROPERTIES[v["invariant"]].claim
            lines.append(wrap(f"line {v['line']}: {v['invariant']}: {claim}", "  ")
                         .replace("\n  ", "\n    ", 0))
    else:
        lines.append("invariants: none violated")
    lines.append("verdict: " + ("ok" if report.ok else "FAIL"))
    return "\n".join(lines) + "\n"
