"""Counterexample queries: the shortest counterexample that says what a reply needs.

``Exploration.counterexample(name)`` is the one shortest counterexample the search met
first. A reply on the list often needs a particular one: the one whose violating call is
a ``host_read`` (``ends_with``), one that goes through a state where the TE already holds
a page (``through``), a few that break the invariant in different ways
(``distinct_counterexamples``), or one that breaks it under this proposal and not under
another (``differing_counterexample``).

Every query is a breadth-first search over the stored graph (``x.src``, ``x.dst``,
``x.act``) and answers with the events of ``Exploration.chain_events``, in the form
``counterexample()`` gives, so the renderers take them unchanged.

What "breaks" means is not restated here. A counterexample ends at its violating
call: a stored transition (or a root's create_gmem) after which ``gmemlab.traces.walk``
reports the invariant broken (``Step.broken``: a state invariant that held before the
call and not after it, or a transition invariant the call fails), the same judgment
check-trace, the lanes and the search make; no call before it breaks the invariant, so
the call a query asks about is the one that breaks it. Each transition a query looks at
is replayed by walk, one event from its stored state, once per exploration.
no_stuck_state is a property of the whole graph, not of a transition: the queries
refuse it.

>>> from gmemlab.explore import Bounds, explore
>>> from gmemlab.model.state import Config
>>> x = explore(Config(proposal="userspace-converts", platform="snp"), Bounds(pages=1))
>>> cx = counterexample_where(x, "host_never_touches_te_private", ends_with="host_read")
>>> [e["op"] for e in cx]
['create_gmem', 'populate', 'host_read']
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from typing import Callable, Iterator, NamedTuple

import numpy as np

from gmemlab.errors import UsageError
from gmemlab.explore.core import Exploration
from gmemlab.invariants import ALWAYS, PROPERTIES
from gmemlab.model.events import FIELDS
from gmemlab.model.state import TE_NONE, Config, VmState
from gmemlab.model import vocab
from gmemlab.traces.walk import walk

__all__ = ["PREDICATES", "OPS", "counterexample_where", "distinct_counterexamples",
           "differing_counterexample", "predicate"]

# The ops a counterexample may end in: the trace vocabulary (gmemlab.model.events).
OPS: tuple[str, ...] = tuple(FIELDS)


class Builtin(NamedTuple):
    """A named state predicate for ``through``: what it means, and either the name of
    the "sometimes" property (gmemlab.invariants) that is the same claim, or a test."""

    claim: str
    test: str | Callable[[Config, VmState], bool]


# Where a "sometimes" property says the same thing, the predicate is that property
# (the semantics exist once); the others are plain facts of a state.
PREDICATES = {
    "after_populate": Builtin("the TE holds some page (a populate went through)", "a_page_is_te_private"),
    "after_finalize": Builtin("the launch is finalized", lambda cfg, s: s.finalized),
    "pinned": Builtin("some page has an extra reference", "a_page_is_pinned"),
    "host_mapped_private": Builtin("a host page table maps a page that KVM or the TE holds private",
                                   lambda cfg, s: any(p.mapped and (p.private or p.te != TE_NONE)
                                                      for p in s.pages)),
}


def predicate(through, cfg: Config) -> Callable[[VmState], bool]:
    """A ``through`` argument as a test of one VmState: a built-in's name (PREDICATES)
    or a callable on VmState.

    >>> predicate("after_finalize", Config(platform="snp"))(VmState(finalized=True))
    True
    >>> predicate("launched", Config())
    Traceback (most recent call last):
    ...
    gmemlab.errors.UsageError: unknown predicate 'launched'; known: after_populate, after_finalize, pinned, host_mapped_private
    """
    if callable(through):
        return through
    b = PREDICATES.get(through)
    if b is None:
        raise UsageError(f"unknown predicate {through!r}; known: {', '.join(PREDICATES)}")
    test = PROPERTIES[b.test].on_state if isinstance(b.test, str) else b.test
    return functools.partial(test, cfg)


# --- checking a request -------------------------------------------------------------

def _invariant(x: Exploration, name: str):
    """The always-property named, as the spec judges it on transitions."""
    for p in x.spec.always:
        if p.name == name:
            return p
    if any(p.name == name and p.graph for p in ALWAYS):
        raise UsageError(f"{name} is a property of the whole state graph, not of a transition: "
                         "it has no violating call to query (explore gives a path to a stuck state)")
    raise UsageError(f"unknown invariant {name!r}; known: {', '.join(p.name for p in x.spec.always)}")


def _op(ends_with: str | None) -> str | None:
    if ends_with is not None and ends_with not in OPS:
        raise UsageError(f"unknown op {ends_with!r}; known: {', '.join(OPS)}")
    return ends_with


# --- the graph ------------------------------------------------------------------------

class _Graph:
    """The stored edges as numpy arrays (sorted by source, as the search emits them), the
    out-edges of each state as one slice (``ptr``), the roots, and the walk verdicts
    learnt so far: per edge (and per root, after the edges) the bit set of the spec's
    always-properties it breaks, -1 while not replayed."""

    def __init__(self, x: Exploration):
        self.src, self.dst, self.act = (np.frombuffer(a, np.int32) for a in (x.src, x.dst, x.act))
        self.n = n = len(x.states)
        self.ptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(self.src, minlength=n), out=self.ptr[1:])
        self.roots = [(sid, k) for sid, (parent, k) in enumerate(x.parent) if parent == -1]
        self.bit = {p.name: 1 << i for i, p in enumerate(x.spec.always)}
        self.broken = np.full(len(self.src) + len(self.roots), -1, np.int32)

    def judge(self, x: Exploration, edges: np.ndarray) -> np.ndarray:
        """The always-properties each transition breaks (an index past the edges: a
        root's create_gmem, from the empty VM), each replayed by walk once."""
        E = len(self.src)
        todo = np.unique(edges[self.broken[edges] < 0])
        pre, at = None, -1
        for e in todo.tolist():
            if e < E:
                if self.src[e] != at:                     # edges come state by state
                    at = int(self.src[e])
                    pre = x.states[at]
                start, ev = pre, x.actions[int(self.act[e])]
            else:
                start, ev = VmState(), x.creates[self.roots[e - E][1]]
            step = next(iter(walk(x.config, [ev], initial=start, engine="pages")))
            self.broken[e] = sum(self.bit[name] for name in step.broken if name in self.bit)
        return self.broken[edges]


# Keyed by id() and dropped with the exploration: an Exploration is not hashable, and
# the verdicts are worth keeping only as long as it lives.
_GRAPHS: dict[int, _Graph] = {}


def _graph(x: Exploration) -> _Graph:
    g = _GRAPHS.get(id(x))
    if g is None:
        g = _GRAPHS[id(x)] = _Graph(x)
        weakref.finalize(x, _GRAPHS.pop, id(x), None)
    return g


class _Candidate(NamedTuple):
    op: str         # the violating call's op
    state: int      # the state it leads to (stored id): with op, what tells it apart
    chain: list     # for Exploration.chain_events


def _candidates(x: Exploration, name: str, ends_with: str | None, through) -> Iterator[_Candidate]:
    """Every violating transition of ``name`` (a call ``ends_with``, after a state
    ``through`` holds on), each with a shortest path to it on which no call breaks
    ``name`` before it; shortest first, ties in the order the search meets them (the
    earlier state, then the action's index).

    Breadth-first from the roots over nodes layer * n + state, where layer 1 says the
    path has passed a state the predicate holds on (without one, every state does), level
    by level as calls_to_launch does (gmemlab.explore.compare): a node is reached first
    from the earliest node of the level before, by its earliest edge. A level's edges are
    replayed (judged) when the level is expanded, so a query that wants only the first
    answer replays only the levels up to it. Without a predicate and before the first
    violation this is the search's own parent tree: the first candidate is
    ``x.counterexample(name)``.
    """
    inv = _invariant(x, name)
    ends_with = _op(ends_with)
    test = None if through is None else predicate(through, x.config)
    g = _graph(x)
    bit, n, E = g.bit[inv.name], g.n, len(g.src)
    wanted = np.array([ends_with in (None, ev["op"]) for ev in x.actions], bool)

    held = np.full(n, -1, np.int8)                        # the predicate on each state, once asked

    def layer_of(states: np.ndarray) -> np.ndarray:
        if test is None:
            return np.ones(len(states), np.int64)
        for s in np.unique(states[held[states] < 0]).tolist():
            held[s] = bool(test(x.states[s]))
        return held[states].astype(np.int64)

    came_from = np.full(2 * n, -2, np.int64)             # -2 not reached, -1 a root
    came_by = np.zeros(2 * n, np.int64)                  # the action (a root: its create index)

    def chain(node: int) -> list[int]:
        out = []
        while node != -1:
            out.append(int(came_by[node]))
            node = int(came_from[node])
        return out[::-1]

    # The roots: a create_gmem that already breaks the invariant is a counterexample of
    # one call (from the empty VM, which no predicate is taken to hold on), and no path
    # goes on from it.
    verdicts = g.judge(x, E + np.arange(len(g.roots)))
    starts = []
    for (sid, k), bad in zip(g.roots, (verdicts & bit) != 0):
        if not bad:
            starts.append(sid)
            came_by[layer_of(np.array([sid]))[0] * n + sid] = k
        elif test is None and ends_with in (None, "create_gmem"):
            yield _Candidate("create_gmem", sid, [k])
    starts = np.array(starts, np.int64)
    frontier = layer_of(starts) * n + starts
    came_from[frontier] = -1
    while frontier.size:
        states, layer = frontier % n, frontier // n
        lens = g.ptr[states + 1] - g.ptr[states]
        ends = np.cumsum(lens)
        if not ends[-1]:
            break
        idx = np.arange(int(ends[-1]), dtype=np.int64) + np.repeat(g.ptr[states] - (ends - lens), lens)
        frm = np.repeat(frontier, lens)
        bad = (g.judge(x, idx) & bit) != 0
        # Violating calls from a node that passed the predicate, in (node, action) order.
        for i in np.flatnonzero(bad & (np.repeat(layer, lens) == 1) & wanted[g.act[idx]]).tolist():
            e = int(idx[i])
            a = int(g.act[e])
            yield _Candidate(x.actions[a]["op"], int(g.dst[e]), chain(int(frm[i])) + [a])
        # On along the calls that keep the invariant and change the state.
        go = np.flatnonzero(~bad & (g.src[idx] != g.dst[idx]))
        to_state = g.dst[idx[go]].astype(np.int64)
        to = (np.repeat(layer, lens)[go] | layer_of(to_state)) * n + to_state
        fresh = np.flatnonzero(came_from[to] == -2)
        _, first = np.unique(to[fresh], return_index=True)
        pick = fresh[np.sort(first)]                      # each new node's first edge
        frontier = to[pick]
        came_from[frontier] = frm[go[pick]]
        came_by[frontier] = g.act[idx[go[pick]]]


def _events(x: Exploration, name: str, c: _Candidate, through) -> list:
    """The concrete counterexample of a candidate, checked by replaying it: it breaks
    ``name`` at its last call and passes a state ``through`` holds on before that."""
    events = x.chain_events(c.chain)
    steps = list(walk(x.config, events, engine="pages"))
    if name not in steps[-1].broken:
        raise AssertionError(f"the query's counterexample does not break {name} at its last call")
    if through is not None:
        test = predicate(through, x.config)
        if not any(test(st.post) for st in steps[:-1]):
            # Stored states are page-sorted under symmetry: a predicate that asks about a
            # particular page is judged on the wrong page there.
            raise UsageError("the predicate depends on the order of pages: explore with symmetry off "
                             "(explore(..., symmetry=False), --no-symmetry) to ask it")
    return events


# --- the queries ----------------------------------------------------------------------

def counterexample_where(x: Exploration, name: str, *, ends_with: str | None = None,
                         through=None) -> list | None:
    """A shortest counterexample of invariant ``name`` whose violating call is a
    ``ends_with`` op, and/or that passes, before that call, a state where ``through``
    holds (a PREDICATES name or a callable on VmState; with symmetry, the default, a
    callable must not depend on the order of pages); None if there is none. With
    neither it is ``x.counterexample(name)``.

    >>> from gmemlab.explore import Bounds, explore
    >>> x = explore(Config(proposal="userspace-converts", platform="snp"), Bounds(pages=1))
    >>> [e["op"] for e in counterexample_where(x, "host_never_touches_te_private", through="after_finalize")]
    ['create_gmem', 'populate', 'finalize', 'host_write']
    >>> counterexample_where(x, "host_never_touches_te_private", ends_with="guest_read") is None
    True
    """
    for c in _candidates(x, name, ends_with, through):
        return _events(x, name, c, through)
    return None


def distinct_counterexamples(x: Exploration, name: str, k: int, *, ends_with: str | None = None,
                             through=None) -> list[list]:
    """Up to k counterexamples of ``name`` that differ in their violating transition: in
    the op of the violating call, or in the state it leads to (up to the order of pages).
    Each is a shortest one for its (op, state). The first is the shortest of all; the
    others come op first: the shortest for each other op, then further states for the
    ops already shown, each round shortest first.

    >>> from gmemlab.explore import Bounds, explore
    >>> x = explore(Config(proposal="userspace-converts", platform="snp"), Bounds(pages=1))
    >>> [cx[-1]["op"] for cx in distinct_counterexamples(x, "host_never_touches_te_private", 3)]
    ['populate', 'host_write', 'host_read']
    """
    if type(k) is not int or k < 1:
        raise UsageError(f"k (how many distinct counterexamples) must be a positive integer, got {k!r}")
    firsts: dict[tuple[str, int], _Candidate] = {}   # (op, state) -> its shortest, in order found
    ops = set()                                      # the ops seen (only counted)
    for c in _candidates(x, name, ends_with, through):
        key = (c.op, c.state)
        if key in firsts:
            continue
        firsts[key] = c
        ops.add(c.op)
        if len(ops) >= k:
            # k ops seen: the first round alone fills the answer, and no later op can
            # come into it (it would be longer, or as long and met later).
            break
    seen: dict[str, int] = {}
    ranked = []
    for i, (key, c) in enumerate(firsts.items()):
        ranked.append((seen.get(c.op, 0), i, c))         # (round, order found)
        seen[c.op] = seen.get(c.op, 0) + 1
    return [_events(x, name, c, through) for _, _, c in sorted(ranked, key=lambda t: t[:2])[:k]]


def differing_counterexample(x: Exploration, other: str, name: str, *, ends_with: str | None = None,
                             through=None) -> list | None:
    """A counterexample of ``name`` under x's proposal whose calls, replayed (walk) under
    proposal ``other`` on the same platform, series and knobs, never break ``name``
    there; None if every candidate breaks it under ``other`` too. Swap the proposals for
    the reverse.

    ``ends_with`` and ``through`` narrow it as in counterexample_where. The candidates
    are that query's counterexamples, shortest first, one per violating transition (a
    shortest path to it): a longer detour to the same transition is not tried.

    >>> from gmemlab.explore import Bounds, explore
    >>> x = explore(Config(proposal="userspace-converts", platform="snp"), Bounds(pages=1))
    >>> [e["op"] for e in differing_counterexample(x, "private-first", "te_private_implies_kvm_private")]
    ['create_gmem', 'populate']
    """
    vocab.proposal(other)                                # UsageError for an unknown name
    if other == x.config.proposal:
        raise UsageError(f"compare {other} with another proposal, not with itself")
    theirs = dataclasses.replace(x.config, proposal=other)
    for c in _candidates(x, name, ends_with, through):
        events = _events(x, name, c, through)
        # The same calls, allocation failures included (walk injects the ENOMEM an
        # event's "expect" records), under the other proposal's rules.
        if not any(name in st.broken for st in walk(theirs, events, engine="pages")):
            return events
    return None
