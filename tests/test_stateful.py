"""Random op sequences through the model, for every proposal, platform and series.

The machine checks that the model never raises, that what docs/domain.md says each proposal
keeps it keeps, and, at the end, that the trace written from the model's own outcomes
replays through check-trace's replay as conforming with the same violations.
"""

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from gmemlab.invariants import ALWAYS, Transition, violations
from gmemlab.model.state import Config, VmState
from gmemlab.model.vocab import PLATFORMS, PROPOSALS, SERIES
from gmemlab.model.step import step
from gmemlab.traces.format import dumps, loads
from gmemlab.traces.replay import config_for, replay

PS = 4096
PAGES = 3
page = st.integers(0, PAGES - 1)
values = st.sampled_from([0, ord("A"), ord("B"), 255])
procs = st.sampled_from(["vmm", "child"])


def kept_by(cfg: Config) -> set[str]:
    """The invariants docs/domain.md says hold under this configuration, whatever the calls."""
    keep = {"private_not_host_mapped", "private_not_pinned"}
    if cfg.proposal != "userspace-converts" and not cfg.convert_after_populate:
        keep |= {"te_private_implies_kvm_private", "populate_targets_private", "host_never_touches_te_private"}
    if cfg.series == "v8" or cfg.refuse_unprepared_populate:
        keep.add("guest_never_sees_stale_data")
    if cfg.series != "v5":
        keep.add("kvm_never_writes_private")
    return keep


class ModelMachine(RuleBasedStateMachine):
    @initialize(proposal=st.sampled_from(PROPOSALS), platform=st.sampled_from(PLATFORMS),
                series=st.sampled_from(SERIES), shared=st.booleans(), refuse=st.booleans())
    def setup(self, proposal, platform, series, shared, refuse):
        self.cfg = Config(proposal=proposal, platform=platform, series=series, refuse_unprepared_populate=refuse)
        self.state = VmState()
        self.events = []
        self.broken = []
        self.apply({"op": "create_gmem", "size": PAGES * PS,
                    "flags": ("MMAP", "INIT_SHARED") if shared else ("MMAP",)})

    def apply(self, ev):
        ev = {"process": "vmm", **ev}
        pre = self.state
        post, outcome, effects = step(self.cfg, pre, ev)  # must never raise
        assert isinstance(outcome, dict) and outcome
        bad = violations(self.cfg, Transition(pre, ev, outcome, post, effects))
        assert not set(bad) & kept_by(self.cfg), (bad, self.cfg, self.events + [ev])
        self.broken.extend(bad)
        self.state = post
        self.events.append({**ev, "expect": outcome, "line": len(self.events) + 2})

    @rule(first=page, n=st.integers(1, PAGES), private=st.booleans())
    def set_attributes(self, first, n, private):
        n = min(n, PAGES - first)
        self.apply({"op": "set_attributes", "offset": first * PS, "size": n * PS,
                    "attributes": "private" if private else "shared", "flags": ()})

    @rule(p=page, v=values, proc=procs)
    def host_write(self, p, v, proc):
        self.apply({"op": "host_write", "offset": p * PS, "value": v, "process": proc})

    @rule(p=page, proc=procs)
    def host_read(self, p, proc):
        self.apply({"op": "host_read", "offset": p * PS, "process": proc})

    @rule(p=page)
    def pin(self, p):
        self.apply({"op": "pin", "offset": p * PS, "size": PS})

    @rule(p=page)
    def unpin(self, p):
        self.apply({"op": "unpin", "offset": p * PS, "size": PS})

    @rule(first=page, n=st.integers(1, PAGES))
    def punch_hole(self, first, n):
        self.apply({"op": "punch_hole", "offset": first * PS, "size": n * PS})

    @rule(first=page, n=st.integers(1, PAGES), buffer=st.booleans(), v=values)
    def populate(self, first, n, buffer, v):
        n = min(n, PAGES - first)
        ev = {"op": "populate", "offset": first * PS, "size": n * PS, "src": "buffer" if buffer else None}
        if buffer:
            ev["value"] = v
        self.apply(ev)

    @rule()
    def finalize(self):
        self.apply({"op": "finalize"})

    @rule(p=page, private=st.booleans(), write=st.booleans(), v=values)
    def guest_access(self, p, private, write, v):
        ev = {"op": "guest_write" if write else "guest_read", "offset": p * PS, "private": private}
        if write:
            ev["value"] = v
        self.apply(ev)

    @rule(first=page, n=st.integers(1, PAGES))
    def guest_accept(self, first, n):
        self.apply({"op": "guest_accept", "offset": first * PS, "size": min(n, PAGES - first) * PS})

    @rule(first=page, private=st.booleans())
    def map_gpa_range(self, first, private):
        self.apply({"op": "map_gpa_range", "offset": first * PS, "size": PS, "private": private})

    @invariant()
    def pages_stay_in_range(self):
        if getattr(self, "state", VmState()).created:
            assert len(self.state.pages) == PAGES
            for p in self.state.pages:
                assert p.pins >= 0 and (p.allocated or p.content == 0)

    def teardown(self):
        if not hasattr(self, "cfg"):
            return
        header = {"format": "gmemlab-trace/1", "platform": self.cfg.platform, "series": self.cfg.series}
        text = dumps(header, self.events)
        h, events = loads(text, "own.jsonl")
        report = replay(config_for(h, self.cfg.proposal, refuse_unprepared_populate=self.cfg.refuse_unprepared_populate),
                        events, "own.jsonl")
        assert report.conforms, report.divergence
        assert {v["invariant"] for v in report.violations} == set(self.broken) - {"no_stuck_state"}


ModelMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=30, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
TestModel = ModelMachine.TestCase


def test_every_always_has_a_sometimes_pair():
    from gmemlab.invariants import PROPERTIES
    for p in ALWAYS:
        assert PROPERTIES[p.pair].kind == "sometimes", p.name
