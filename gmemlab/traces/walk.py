"""The one replay: a sequence of events through the model, one Step per event.

Every consumer of a replay folds over ``walk``: check-trace's Report
(gmemlab.traces.replay), the memory-map lanes (gmemlab.render.lanes), the conformance
coverage (gmemlab.render.views) and the explorer's concrete counterexamples
(``walk_events``). So they cannot disagree on what the model did with a trace.

Per event, ``walk`` applies the model's step function (gmemlab.model.step.step) to the
event as the model must take it (``with_observed_failure``: a call the trace saw fail
with ENOMEM gets its allocation failure) and yields a Step:

- line: the event's line in its trace (None for events that have none);
- event: the Event the model took;
- pre, outcome, post, effects: the transition. On the page-level path pre and post are
  whole VmStates. On runs (the range engine of gmemlab.traces.ranges, used at guest
  scale) they are the compressed states the engine applied step() to, the transition
  the invariants are judged on; the whole state after the last step is ``Walk.state``;
- broken: the always-properties of gmemlab.invariants this step breaks: the state ones
  that held before it and do not after (so a state invariant is named where it stops
  holding, and again if it holds and breaks again), then the transition ones it fails;
- expected: the trace's "expect", or None;
- diverged: whether the outcome contradicts "expect" (``mismatch``).

Which path: ``engine="pages"`` or ``"ranges"``, or ``"auto"`` (the default): pages until
a create_gmem makes a file of more than RANGE_PAGES (64) pages, then runs from there on.

``noteworthy=True`` yields only the Steps that diverged or broke an invariant (what a
fold like check-trace's Report looks at), the same Steps as the full walk; the quiet
ones are walked all the same and counted in ``Walk.events``, but never built.

>>> from gmemlab.model.events import event
>>> from gmemlab.model.state import Config
>>> evs = [event("create_gmem", size=8192, flags=("MMAP", "INIT_SHARED"), line=2),
...        event("host_write", offset=0, value=65, line=3, expect={"ok": True}),
...        event("set_attributes", offset=0, size=8192, attributes="private", line=4,
...              expect={"ret": "ENOMEM", "error_offset": 0})]
>>> [(s.line, s.outcome, s.broken, s.diverged) for s in walk(Config(platform="snp"), evs)]
[(2, {'ret': 0}, (), False), (3, {'ok': True}, (), False), (4, {'ret': 'ENOMEM', 'error_offset': 0}, (), False)]
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Iterable, Iterator, NamedTuple

from gmemlab.invariants import ALWAYS, Transition
from gmemlab.model.events import Event, event
from gmemlab.model.state import Config, VmState
from gmemlab.model.step import FAIL, step
from gmemlab.model.threads import step_name
from gmemlab.traces.ranges import _MEMO_MAX, RangeEngine, RunState

# The fields of "expect" a prediction is checked on.
CHECKED = ("ret", "error_offset", "done", "ok", "signal", "exit", "exception", "value")

# A trace that creates a file of more pages than this goes on on runs of equal pages
# (engine="auto"). Chosen by cost: the page engine copies the whole VmState on every
# event (O(pages) per event: 200k events on 4,096 pages take minutes), the range engine
# costs about the same at 16 pages and nothing more as the file grows (measured: 20k
# events on 64 pages, 0.34 s on pages and 0.18 s on runs; 5k events on 4,096 pages,
# 2.4 s and 0.05 s).
RANGE_PAGES = 64

ENGINES = ("auto", "pages", "ranges")


def with_observed_failure(ev: Event) -> Event:
    """The event as the model must take it: where the trace observed ENOMEM from a call
    that allocates (a conversion, or populate converting), the allocation failed.

    >>> with_observed_failure(event("set_attributes", offset=0, size=4096, attributes="private",
    ...                             expect={"ret": "ENOMEM"}))["fail"]
    'ENOMEM'
    """
    exp = ev.get("expect")
    if exp is not None and exp.get("ret") == "ENOMEM" and ev["op"] in ("set_attributes", "populate"):
        return ev.replace(**{FAIL: "ENOMEM"})
    return ev


def mismatch(expected: Mapping, predicted: Mapping) -> bool:
    """Whether a prediction contradicts what the trace observed.

    >>> mismatch({"ret": 0}, {"ret": 0, "done": 2})
    False
    >>> mismatch({"ok": True}, {"signal": "SIGBUS"})
    True
    """
    # Over the fields of "expect" (one or two), not over CHECKED: the same answer, sooner.
    if expected == predicted:  # the common case: every field named, and equal
        return False
    for key, value in expected.items():
        if key in _CHECKED and (key not in predicted or predicted[key] != value):
            return True
    return False


_CHECKED = frozenset(CHECKED)


def as_event(ev: Mapping) -> Event:
    """An Event as it is, any other mapping of event fields through events.event()."""
    if type(ev) is Event:
        return ev
    return event(ev["op"], **{k: v for k, v in ev.items() if k != "op"})


class Step(NamedTuple):
    """One event of a walk (see the module docstring)."""

    line: int | None
    event: Event
    pre: VmState
    outcome: dict
    post: VmState
    effects: frozenset
    broken: tuple
    expected: dict | None
    diverged: bool


_new_step = tuple.__new__  # Step(...) without the Python-level __new__ of a NamedTuple
_STATE = [p for p in ALWAYS if p.on_state is not None]
_STATE_NAMES = tuple(p.name for p in _STATE)
_TRANS = [p for p in ALWAYS if p.on_transition is not None]


class Walk:
    """The iterator ``walk()`` returns: the Steps, one per event, made lazily (an event
    is read only once the Step before it has been taken, so ``events`` may be a
    generator that looks at ``state``). ``state`` is the whole state after the last
    step (a VmState, or on runs a RunState, whose ``expand()`` gives the VmState);
    ``events`` the number of events walked so far. With ``noteworthy`` only the Steps
    that diverged or broke an invariant come out (see the module docstring)."""

    def __init__(self, cfg: Config, events: Iterable[Mapping], initial: VmState | None = None,
                 *, engine: str = "auto", noteworthy: bool = False):
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
        self.cfg = cfg
        self._state = VmState() if initial is None else initial
        self.engine: RangeEngine | None = None  # the range engine, once on runs
        self.events = 0
        self._noteworthy = noteworthy
        self._steps = self._walk(iter(events), engine)

    def __iter__(self) -> Iterator[Step]:
        return self._steps

    def __next__(self) -> Step:
        return next(self._steps)

    @property
    def on_runs(self) -> bool:
        """Whether the steps are (now) on runs: compressed pre and post."""
        return self.engine is not None

    @property
    def state(self) -> VmState | RunState:
        return self._state if self.engine is None else self.engine.run_state()

    def _walk(self, events: Iterator[Mapping], engine: str) -> Iterator[Step]:
        cfg = self.cfg
        state = self._state
        quiet = self._noteworthy
        if engine != "ranges":
            holds = [p.on_state(cfg, state) for p in _STATE]
            auto = engine == "auto"
            for ev in events:
                ev = as_event(ev)
                if auto and ev["op"] == "create_gmem" and ev["size"] // cfg.page_size > RANGE_PAGES:
                    events = itertools.chain([ev], events)
                    break
                ev = with_observed_failure(ev)
                post, outcome, effects = step(cfg, state, ev)
                now = [p.on_state(cfg, post) for p in _STATE]
                broken = [name for name, was, is_ in zip(_STATE_NAMES, holds, now) if was and not is_]
                t = Transition(state, ev, outcome, post, effects)
                broken += [p.name for p in _TRANS if not p.on_transition(cfg, t) and p.name not in broken]
                expected = ev.get("expect")
                self._state = post
                self.events += 1
                diverged = expected is not None and mismatch(expected, outcome)
                if broken or diverged or not quiet:
                    yield _new_step(Step, (ev.get("line"), ev, state, outcome, post, effects, tuple(broken),
                                           expected, diverged))
                state, holds = post, now
            else:
                return
        yield from self._walk_runs(events, state, quiet)

    def _walk_runs(self, events: Iterator[Mapping], state: VmState, quiet: bool) -> Iterator[Step]:
        cfg = self.cfg
        eng = self.engine = RangeEngine(cfg, state)
        apply = eng.apply
        holds = eng.state_holds()
        epoch = eng.epoch  # the counts behind state_holds() are unchanged while it is
        judged: dict = {}  # transition verdicts by (compressed pre, event): a pure function too
        n = self.events
        for ev in events:
            n += 1
            self.events = n
            if type(ev) is not Event:
                ev = as_event(ev)
            expected = ev.get("expect")
            if expected is not None and expected.get("ret") == "ENOMEM":
                ev = with_observed_failure(ev)
            outcome, effects, t = apply(ev)
            entry = eng.last_entry
            if entry is not None:  # a one-page event: its verdict sits in the engine's memo
                eng.last_entry = eng.last_key = None
                bad = entry[-1]
                if bad is None:
                    bad = entry[-1] = tuple(p.name for p in _TRANS if not p.on_transition(cfg, t))
            else:
                tkey = eng.last_key
                eng.last_key = None
                bad = judged.get(tkey) if tkey is not None else None
            if bad is None:
                if len(judged) >= _MEMO_MAX:
                    judged.clear()
                bad = tuple(p.name for p in _TRANS if not p.on_transition(cfg, t))
                if tkey is not None:
                    judged[tkey] = bad
            if eng.epoch != epoch:
                epoch = eng.epoch
                now = eng.state_holds()
                if now != holds:
                    stopped = tuple(name for name, was, is_ in zip(_STATE_NAMES, holds, now) if was and not is_)
                    if stopped:
                        bad = stopped + tuple(name for name in bad if name not in stopped)
                    holds = now
            # mismatch(), its common case first: an "expect" equal to the outcome.
            diverged = expected is not None and expected != outcome and mismatch(expected, outcome)
            if bad or diverged or not quiet:
                yield _new_step(Step, (ev.get("line"), ev, t.pre, outcome, t.post, effects, bad, expected, diverged))


def walk(cfg: Config, events: Iterable[Mapping], initial: VmState | None = None, *,
         engine: str = "auto", noteworthy: bool = False) -> Walk:
    """Replay events (Events, or mappings of their fields) from ``initial`` (the empty
    VM by default): one Step per event, lazily (with ``noteworthy``, only those that
    diverged or broke an invariant). See the module docstring."""
    return Walk(cfg, events, initial, engine=engine, noteworthy=noteworthy)


def trace_of(steps: Iterable[Step], cfg: Config | None = None) -> list[Event]:
    """The walked events as a trace of the model's own run: each with "expect" set to the
    model's outcome and "fail" dropped (an "expect" of ENOMEM says it, see
    with_observed_failure). Given the config the steps were walked under (on the page
    path: Step.pre a whole VmState), a thread's run says in its "note" what the step
    did (gmemlab.model.threads.step_name), for the reader of the trace and its lanes."""
    out = []
    for st in steps:
        ev = st.event.without(FAIL).replace(expect=st.outcome)
        if cfg is not None and ev["op"] == "run" and ev.get("thread"):
            name = step_name(cfg, st.pre, ev["thread"])
            if name:
                ev = ev.replace(note=name)
        out.append(ev)
    return out


def walk_events(cfg: Config, events: Iterable[Mapping], initial: VmState | None = None) -> list[Event]:
    """Concrete events with the model's outcomes as "expect" (what the explorer hands
    out as a counterexample), page by page.

    Where each event depends on the state the one before left (symmetry reduction maps
    an abstract action through the current page order), walk directly and feed it a
    generator that reads ``Walk.state``::

        w = walk(cfg, concrete(), engine="pages")   # concrete() reads w.state
        out = trace_of(w, cfg)
    """
    return trace_of(walk(cfg, events, initial, engine="pages"), cfg)
