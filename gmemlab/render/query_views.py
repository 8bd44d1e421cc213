"""What notebook 03 shows of the counterexample queries (gmemlab.explore.queries).

Each answer is a views.Counterexample, so it renders as every other counterexample does
(steps, memory-map lanes, the trace file that replays it); here it is only grouped by
the question asked. No IPython here, as in views.

>>> x = views.exploration("userspace-converts", "snp", "v8", 1)
>>> [(q.invariant, [len(cx.events) for cx in q.found]) for q in asked(x, ends_with="host_read")]
[('te_private_implies_kvm_private', []), ('host_never_touches_te_private', [3]), ('populate_targets_private', [])]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gmemlab.explore import Exploration
from gmemlab.explore.queries import PREDICATES, differing_counterexample, distinct_counterexamples
from gmemlab.invariants import ALWAYS, PROPERTIES
from gmemlab.render import html as H
from gmemlab.render import views
from gmemlab.render.lanes import compute, lanes_text


@dataclass
class Answer:
    """The counterexamples one proposal gives to one question about one invariant."""

    proposal: str
    invariant: str
    question: str                               # the request, in words
    found: list = field(default_factory=list)   # [views.Counterexample]

    def html(self) -> str:
        lengths = ",".join(str(len(cx.events)) for cx in self.found)
        head = (f'<div class="gml-query" data-proposal="{H.esc(self.proposal)}" '
                f'data-invariant="{self.invariant}" data-steps="{lengths}">'
                f"<h4>{H.esc(self.proposal)}, <code>{self.invariant}</code>: {H.esc(self.question)}</h4>")
        body = "".join(cx.html() for cx in self.found) or "<p>No counterexample answers this.</p>"
        return head + body + "</div>"

    def text(self) -> str:
        head = f"{self.proposal}, {self.invariant}: {self.question}"
        if not self.found:
            return head + ": none\n"
        return "\n".join([head] + [f"{cx.steps}\n\n{lanes_text(cx.lanes)}\n" for cx in self.found])


def question(ends_with: str = "", through: str = "", distinct: int = 1, differ_from: str = "") -> str:
    """The request in words.

    >>> question(ends_with="host_read", through="after_populate", distinct=2)
    'up to 2 distinct, ending in host_read, through a state where the TE holds some page (a populate went through)'
    """
    parts = [f"up to {distinct} distinct" if distinct > 1 else "the shortest"]
    if ends_with:
        parts.append(f"ending in {ends_with}")
    if through:
        parts.append(f"through a state where {PREDICATES[through].claim}" if through in PREDICATES
                     else f"through {through}")
    if differ_from:
        parts.append(f"not broken by the same calls under {differ_from}")
    return ", ".join(parts)


def _invariants(x: Exploration, invariant: str) -> list[str]:
    """The invariant asked about, or each one x breaks that has a violating call."""
    if invariant:
        return [invariant]
    return [p.name for p in ALWAYS if not p.graph and not x.holds(p.name)]


def _counterexample(x: Exploration, name: str, events: list, q: str) -> views.Counterexample:
    cfg, p = x.config, PROPERTIES[name]
    desc = f"{name} broken by {cfg.label()} at {x.bounds.pages} page(s): {q} (gmemlab counterexample query)"
    return views.Counterexample(cfg.proposal, name, p.claim, p.source, events, compute(cfg, events),
                                views.trace_text(cfg, events, desc))


def asked(x: Exploration, invariant: str = "", ends_with: str = "", through: str = "",
          distinct: int = 1) -> list[Answer]:
    """For the invariant named (or each one x breaks): up to ``distinct`` counterexamples
    ending in ``ends_with`` and passing ``through`` (empty: any)."""
    q = question(ends_with, through, distinct)
    out = []
    for name in _invariants(x, invariant):
        found = distinct_counterexamples(x, name, distinct, ends_with=ends_with or None, through=through or None)
        out.append(Answer(x.config.proposal, name, q, [_counterexample(x, name, cx, q) for cx in found]))
    return out


def differing(x: Exploration, other: Exploration, invariant: str = "", ends_with: str = "",
              through: str = "") -> list[Answer]:
    """For the invariant named (or each one x breaks): a counterexample under x's
    proposal that the same calls do not give under other's."""
    q = question(ends_with, through, 1, other.config.proposal)
    out = []
    for name in _invariants(x, invariant):
        cx = differing_counterexample(x, other.config.proposal, name, ends_with=ends_with or None,
                                      through=through or None)
        out.append(Answer(x.config.proposal, name, q, [] if cx is None else [_counterexample(x, name, cx, q)]))
    return out


def answers(proposals, platform: str = "snp", series: str = "v8", pages: int = 1, knobs=None,
            invariant: str = "", ends_with: str = "", through: str = "", distinct: int = 1,
            differ_from: str = "") -> list[Answer]:
    """Notebook 03's queries, proposal by proposal (explorations cached as views does):
    ``asked`` for each, and with ``differ_from`` also ``differing`` both ways between it
    and each other proposal.

    >>> found = answers(["private-first"], invariant="te_private_implies_kvm_private",
    ...                 differ_from="userspace-converts")
    >>> [(a.proposal, a.question, len(a.found)) for a in found]   # doctest: +NORMALIZE_WHITESPACE
    [('private-first', 'the shortest', 0),
     ('private-first', 'the shortest, not broken by the same calls under userspace-converts', 0),
     ('userspace-converts', 'the shortest, not broken by the same calls under private-first', 1)]
    """
    def x(name):
        return views.exploration(name, platform, series, pages, knobs)
    out = []
    for name in proposals:
        out += asked(x(name), invariant, ends_with, through, distinct)
        if differ_from and differ_from != name:
            out += differing(x(name), x(differ_from), invariant, ends_with, through)
            out += differing(x(differ_from), x(name), invariant, ends_with, through)
    return out


def answers_html(answers: list[Answer]) -> str:
    return "".join(a.html() for a in answers) or "<p>No invariant with a violating call breaks here.</p>"


def answers_text(answers: list[Answer]) -> str:
    return "\n".join(a.text() for a in answers) or "No invariant with a violating call breaks here.\n"
