"""check-trace: replay a trace through a proposal's model and compare.

For each event the model predicts an outcome; where the trace has "expect", every field
it names must match the prediction (a field absent from "expect" is not checked). The
replay goes on past the first divergence along the model's own path, so that every
invariant the events break is reported; the first divergence is the one reported.
A state invariant is reported at the line where it stops holding (again if it holds
and breaks again); a transition invariant at each line that breaks it.

The replay itself is gmemlab.traces.walk; a Report is a fold over its Steps.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from gmemlab.model.state import Config, VmState
from gmemlab.traces.format import value_json
from gmemlab.traces.walk import (CHECKED, RANGE_PAGES, Step, mismatch, walk,  # noqa: F401
                                 with_observed_failure)


def outcome_json(outcome: Mapping) -> dict:
    """An outcome as a trace writes it (byte values as letters where printable)."""
    return {k: (value_json(v) if k == "value" else v) for k, v in outcome.items()}


@dataclass
class Report:
    path: str
    config: Config
    events: int = 0
    divergence: dict | None = None
    violations: list = field(default_factory=list)
    state: VmState = VmState()  # after the last event (a RangeEngine RunState on runs)

    @property
    def conforms(self) -> bool:
        return self.divergence is None

    @property
    def ok(self) -> bool:
        return self.conforms and not self.violations

    def to_json(self) -> dict:
        return {"conforms": self.conforms, "divergence": self.divergence,
                "violations": self.violations, "events": self.events}

    def add(self, st: Step) -> None:
        """Count one step; keep the first prediction that contradicts its "expect" and
        every invariant it breaks."""
        self.events += 1
        if st.diverged and self.divergence is None:
            self.divergence = {"line": st.line, "op": st.event["op"],
                               "expected": outcome_json({k: v for k, v in st.expected.items() if k in CHECKED}),
                               "predicted": outcome_json(st.outcome)}
        if st.broken:
            self.violations.extend({"invariant": name, "line": st.line} for name in st.broken)


def config_for(header: dict, proposal: str = "private-first", series: str | None = None,
               **knobs) -> Config:
    """The model configuration a trace replays under (--series overrides the header; a
    header's "in_place": false turns the knob in_place_off on)."""
    if header.get("in_place") is False:
        knobs = {**knobs, "in_place_off": True}
    return Config(proposal=proposal, platform=header["platform"],
                  series=series or header["series"], page_size=header["page_size"], **knobs)


def replay(cfg: Config, events: Iterable[Mapping], path: str = "<trace>", *, engine: str = "auto") -> Report:
    """Replay events (Events from gmemlab.traces.format) and judge them. Streams: events
    may be a generator (gmemlab.traces.format.iter_file) and are never held. On runs
    (a file of more than RANGE_PAGES pages, or engine="ranges") ``report.state`` is a
    RunState (``.expand()`` gives the VmState)."""
    report = Report(path, cfg)
    # Only the steps add() keeps anything of; the others it would only count.
    steps = walk(cfg, events, engine=engine, noteworthy=True)
    # The walk makes objects by the million and almost no cycles: the cyclic collector's
    # passes over them cost about a tenth of a guest-scale replay, and free nothing.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for st in steps:
            report.add(st)
    finally:
        if collecting:
            gc.enable()
    report.events = steps.events
    report.state = steps.state
    return report


def replay_ranges(cfg: Config, events: Iterable[Mapping], path: str = "<trace>") -> Report:
    """replay() on runs from the first event on, whatever the file's size."""
    return replay(cfg, events, path, engine="ranges")
