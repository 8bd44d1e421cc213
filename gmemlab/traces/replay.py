"""check-trace: replay a trace through a proposal's model and compare.

For each event the model predicts an outcome; where the trace has "expect", every field
it names must match the prediction (a field absent from "expect" is not checked). The
replay goes on past the first divergence along the model's own path, so that every
invariant the events break is reported; the first divergence is the one reported.
A state invariant is reported at the line where it stops holding (again if it holds
and breaks again); a transition invariant at each line that breaks it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterable

from gmemlab.invariants import ALWAYS, Transition
from gmemlab.model.state import Config, VmState
from gmemlab.model.step import step
from gmemlab.traces.format import value_json

CHECKED = ("ret", "error_offset", "done", "ok", "signal", "exit", "exception", "value")


def outcome_json(outcome: dict) -> dict:
    """An outcome as a trace writes it (byte values as letters where printable)."""
    return {k: (value_json(v) if k == "value" else v) for k, v in outcome.items()}


def with_observed_failure(ev: dict) -> dict:
    """The event as the model must take it: where the trace observed ENOMEM from a call
    that allocates (a conversion, or populate converting), the allocation failed.

    >>> with_observed_failure({"op": "set_attributes", "expect": {"ret": "ENOMEM"}})["fail"]
    'ENOMEM'
    """
    exp = ev.get("expect")
    if exp is not None and exp.get("ret") == "ENOMEM" and ev["op"] in ("set_attributes", "populate"):
        return {**ev, "fail": "ENOMEM"}
    return ev


def mismatch(expected: dict, predicted: dict) -> bool:
    """Whether a prediction contradicts what the trace observed.

    >>> mismatch({"ret": 0}, {"ret": 0, "done": 2})
    False
    >>> mismatch({"ok": True}, {"signal": "SIGBUS"})
    True
    """
    for key in CHECKED:
        if key in expected and (key not in predicted or predicted[key] != expected[key]):
            return True
    return False


@dataclass
class Report:
    path: str
    config: Config
    events: int = 0
    divergence: dict | None = None
    violations: list = field(default_factory=list)
    state: VmState = VmState()
    broken: set = field(default_factory=set)  # state invariants broken now (not reported again)

    @property
    def conforms(self) -> bool:
        return self.divergence is None

    @property
    def ok(self) -> bool:
        return self.conforms and not self.violations

    def to_json(self) -> dict:
        return {"conforms": self.conforms, "divergence": self.divergence,
                "violations": self.violations, "events": self.events}

    def observe(self, ev: dict, outcome: dict) -> None:
        """Count the event; keep the first prediction that contradicts its "expect"."""
        self.events += 1
        expected = ev.get("expect")
        if self.divergence is None and expected is not None and mismatch(expected, outcome):
            self.divergence = {"line": ev["line"], "op": ev["op"],
                               "expected": outcome_json({k: v for k, v in expected.items() if k in CHECKED}),
                               "predicted": outcome_json(outcome)}

    def judge(self, line: int, state_verdicts, trans_bad: list[str]) -> None:
        """Record the violations of one line: a state invariant where it stops holding
        (``state_verdicts``: (name, holds) pairs), a transition invariant each time."""
        line_bad = []
        for name, holds in state_verdicts:
            if holds:
                self.broken.discard(name)
            elif name not in self.broken:
                self.broken.add(name)
                line_bad.append(name)
        line_bad.extend(name for name in trans_bad if name not in line_bad)
        self.violations.extend({"invariant": name, "line": line} for name in line_bad)


def config_for(header: dict, proposal: str = "private-first", series: str | None = None,
               **knobs) -> Config:
    """The model configuration a trace replays under (--series overrides the header)."""
    return Config(proposal=proposal, platform=header["platform"],
                  series=series or header["series"], page_size=header["page_size"], **knobs)


# A trace that creates a file of more pages than this goes on on runs of equal pages
# (gmemlab.traces.ranges: the same Report, with report.state a RunState).
RANGE_PAGES = 4096


def replay(cfg: Config, events: Iterable[dict], path: str = "<trace>") -> Report:
    """Replay events (dicts from gmemlab.traces.format) and judge them."""
    report = Report(path, cfg)
    state = VmState()
    state_props = [p for p in ALWAYS if p.on_state is not None]
    trans_props = [p for p in ALWAYS if p.on_transition is not None]
    events = iter(events)
    for ev in events:
        if ev["op"] == "create_gmem" and ev["size"] // cfg.page_size > RANGE_PAGES:
            from gmemlab.traces.ranges import continue_ranges
            return continue_ranges(cfg, itertools.chain([ev], events), report, state)
        pre = state
        ev = with_observed_failure(ev)
        state, outcome, effects = step(cfg, pre, ev)
        report.observe(ev, outcome)
        t = Transition(pre, ev, outcome, state, effects)
        report.judge(ev["line"], ((p.name, p.on_state(cfg, state)) for p in state_props),
                     [p.name for p in trans_props if not p.on_transition(cfg, t)])
    report.state = state
    return report
