"""What the notebooks show, one call per view, so that the notebooks stay thin.

Each function takes explorations, comparisons or trace reports and returns HTML (or
data the HTML is made of). Nothing here imports IPython or ipywidgets: the same views
go into the live workbook, the widget panels and the exported report.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import Counter
from dataclasses import dataclass, field

from gmemlab.errors import InputError
from gmemlab.explore import Bounds, Exploration, explore
from gmemlab.explore.compare import Comparison, compare
from gmemlab.invariants import ALWAYS, PROPERTIES, VMM_RECOVERS
from gmemlab.model.state import TE_NAMES, Config
from gmemlab.model import vocab
from gmemlab.model.vocab import KNOBS, PROPOSALS, SERIES, proposal_names
from gmemlab.render import html as H
from gmemlab.render import bounded
from gmemlab.render.graphs import PROJECTIONS, draw, full_view
from gmemlab.render.lanes import compute, lanes_html, lanes_text
from gmemlab.render.sources import config_sources, proposal_claim, proposal_source
from gmemlab.render.text import steps_text

# --- explorations, cached: a widget change must not re-explore what it has seen -----------


def knob_dict(knobs) -> dict:
    """Knobs from a dict, or from an iterable of the names that are on, checked against
    the registry (gmemlab.model.vocab.KNOBS); a name may also be spelled as its flag
    (``huge-folios``) or its label (``huge folios``). In the registry's order.

    >>> knob_dict(["allocation_failures", "huge-folios"])
    {'huge_folios': True, 'allocation_failures': True}
    """
    if knobs is None:
        return {}
    if isinstance(knobs, str):
        knobs = [knobs]
    if isinstance(knobs, dict):
        on = {k for k, v in knobs.items() if v}
    else:
        on = set(knobs)
    on = {k.strip().lstrip("-").replace("-", "_").replace(" ", "_") for k in on}
    unknown = sorted(on - set(KNOBS))
    if unknown:
        raise ValueError(f"unknown knob(s) {', '.join(unknown)}; known: {', '.join(KNOBS)}")
    return {k: True for k in KNOBS if k in on}


def bounds(pages: int, knobs: dict) -> Bounds:
    """The explorer's bounds: with the NO_DIRECT_MAP series on, the file is also created
    with NO_DIRECT_MAP (as `gmemlab explore --no-direct-map` does)."""
    return Bounds(pages=pages, no_direct_map=bool(knobs.get("no_direct_map_series")))


# The caches are keyed by the Proposal objects too (compared by identity): a variant
# registered again under the same name is explored anew. What is not part of the key
# (the progress callback, "only if cached") reaches _compare through the calling thread.
_call = threading.local()


class _NotCached(Exception):
    pass


@functools.lru_cache(maxsize=64)
def _compare(platform: str, series: str, pages: int, knobs: tuple, rules: tuple) -> Comparison:
    if getattr(_call, "peek", False):
        raise _NotCached   # an exception is not cached: the next call explores
    return compare(platform, series, bounds(pages, dict(knobs)), knobs=dict(knobs),
                   proposals=tuple(p.name for p in rules), progress=getattr(_call, "progress", None) or False)


def comparison(platform: str = "snp", series: str = "v8", pages: int = 1, knobs=None,
               proposals=None, progress=None) -> Comparison:
    """compare() for one configuration, computed once per session: every proposal known
    (the built-ins and the registered variants), or those named. progress: a callable
    ``progress(states, frontier, depth, done)`` called as each proposal is explored, in
    order (gmemlab.explore.search.Progress); what it raises ends the exploration."""
    names = proposal_names() if proposals is None else tuple(proposals)
    _call.progress = progress
    try:
        return _compare(platform, series, pages, tuple(sorted(knob_dict(knobs).items())),
                        tuple(vocab.proposal(n) for n in names))
    finally:
        _call.progress = None


def cached_comparison(platform: str = "snp", series: str = "v8", pages: int = 1, knobs=None,
                      proposals=None) -> Comparison | None:
    """comparison() if this session has computed it already, else None (nothing explored)."""
    _call.peek = True
    try:
        return comparison(platform, series, pages, knobs, proposals)
    except _NotCached:
        return None
    finally:
        _call.peek = False


def load_variants(paths) -> list:
    """Load variants files (a path, a comma list or a list of paths; empty: none) into the
    registry, as ``--variants`` does: a notebook's ``variants`` parameter."""
    if isinstance(paths, str):
        paths = [p.strip() for p in paths.split(",") if p.strip()]
    return [p for path in paths or () for p in vocab.load_variants(path)]


def column(table: Comparison, proposal: str):
    for c in table.columns:
        if c.proposal == proposal:
            return c
    raise ValueError(f"unknown proposal {proposal!r}; known: {', '.join(c.proposal for c in table.columns)}")


@functools.lru_cache(maxsize=64)
def _explore(proposal: str, platform: str, series: str, pages: int, knobs: tuple, rules) -> Exploration:
    return explore(Config(proposal=proposal, platform=platform, series=series, **dict(knobs)),
                   bounds(pages, dict(knobs)))


def exploration(proposal: str = "private-first", platform: str = "snp", series: str = "v8",
                pages: int = 1, knobs=None) -> Exploration:
    """explore() for one configuration, computed once per session."""
    return _explore(proposal, platform, series, pages, tuple(sorted(knob_dict(knobs).items())),
                    vocab.proposal(proposal))


# --- 01 state space -------------------------------------------------------------------------

def summary_html(x: Exploration) -> str:
    """States, transitions, and each invariant held or broken, with its claim and source."""
    rows = []
    for p in ALWAYS:
        holds = x.holds(p.name)
        vac = holds and p.pair not in x.witnesses
        text = "holds*" if vac else ("holds" if holds else f"BROKEN {len(x.counterexample(p.name))}")
        bg = H.VACUOUS if vac else (H.HOLDS if holds else H.BROKEN)
        rows.append(f'<tr class="gml-inv" data-invariant="{p.name}" data-holds="{str(holds).lower()}">'
                    f'<td style="font-family:monospace;text-align:left">{p.name}</td>'
                    f'<td style="background:{bg};text-align:center">{text}</td>'
                    f"<td style='text-align:left'>{H.esc(p.claim)}</td>"
                    f"<td style='font-size:85%;text-align:left'>{H.esc(p.source)}</td></tr>")
    cfg = x.config
    head = (f"<p><b>{H.esc(cfg.label())}</b>, {x.bounds.pages} page(s): "
            f'<span class="gml-states">{len(x.states):,}</span> states, {x.transitions:,} transitions.</p>')
    th = "".join(f"<th style='text-align:left'>{h}</th>" for h in ("invariant", "", "claim", "source"))
    return (head + f'<table style="border-collapse:collapse"><tr>{th}</tr>' + "".join(rows) + "</table>"
            + H.sources_html([(f"proposal {cfg.proposal}", proposal_source(cfg.proposal))]
                             + config_sources(cfg.platform, cfg.series, {k: getattr(cfg, k) for k in KNOBS})))


def full_graph_html(x: Exploration, engine: str = "auto", max_nodes: int = bounded.MAX_BOXES) -> str:
    """Every state while a drawing of one box each stays readable (max_nodes); above,
    a sentence saying so and the states clustered by launch progress (the views below,
    built for a question, and the interactive view show the rest)."""
    if len(x.states) > max_nodes:
        return (f'<p class="gml-full-replaced">{len(x.states):,} states are too many to draw one by one '
                f"(a drawing stays readable up to {max_nodes} boxes). Here they are clustered by "
                "launch progress; below, the quotients, the path, the neighbourhood of a state and the "
                "small multiples per page answer narrower questions, and in a live notebook the "
                "interactive view pans, zooms and searches the states themselves.</p>"
                + draw(bounded.progress_view(x), engine).html(max_height=None))
    d = full_view(x, max_nodes)
    d.svg_title, d.grid = False, True
    return draw(d, engine).html(max_height=None)


def quotient_html(x: Exploration, projection: str, engine: str = "auto") -> str:
    """A quotient, whole while small, clustered by level above bounded.MAX_BOXES folds."""
    return draw(bounded.quotient_view(x, projection), engine).html(max_height=None)


def path_html(x: Exploration, invariant: str | None = None, engine: str = "auto") -> str:
    """One box per step of a counterexample to ``invariant`` (None or "": the launch)."""
    return draw(bounded.path_view(x, invariant or None), engine).html(max_height=None,
                                                                       css_class="gml-graph gml-path")


def paths_html(x: Exploration, engine: str = "auto") -> str:
    """The launch step by step, and the counterexample to the first invariant that breaks."""
    out = path_html(x, None, engine)
    broken = [p.name for p in ALWAYS if not x.holds(p.name) and x.counterexample(p.name)]
    if broken:
        return out + path_html(x, broken[0], engine)
    return out + "<p>No invariant breaks here: no counterexample to draw.</p>"


def neighbourhood_html(x: Exploration, state: int | None = None, radius: int = 1, engine: str = "auto") -> str:
    """A state (default: where the first broken invariant shows) and its neighbours."""
    return draw(bounded.neighbourhood_view(x, state, radius), engine).html(
        max_height=None, css_class="gml-graph gml-neighbourhood")


def page_views_html(x: Exploration, projection: str = "launch progress", engine: str = "auto") -> str:
    """Small multiples: one small graph per page, side by side where they fit."""
    figs = "".join('<div style="flex:0 1 auto;max-width:100%">'
                   + draw(d, engine).html(max_height=None, css_class="gml-graph gml-page") + "</div>"
                   for d in bounded.page_views(x, projection))
    return f'<div class="gml-multiples" style="display:flex;flex-wrap:wrap;gap:8px">{figs}</div>'


def interactive_view(x: Exploration, enabled: bool = True, color: str = "progress"):
    """The ipysigma widget (pan, zoom, search) in a live notebook, or a note saying
    where it is (the exported page shows the static views only: no kernel, no CDN)."""
    if enabled:
        try:
            return bounded.sigma(x, color)
        except ImportError as e:
            return H.show(f"<p>{H.esc(str(e))}</p>")
    return H.show('<p class="gml-interactive-off">The interactive view (pan, zoom and search over '
                  f"{H.esc(bounded.interactive_graph_what(x))}) runs in the live notebook; this page shows "
                  "the static views.</p>")


def state_space_data(x: Exploration) -> dict:
    """Numbers a test can hold the notebook to."""
    return {"states": len(x.states), "transitions": x.transitions,
            "broken": [p.name for p in ALWAYS if not x.holds(p.name)],
            "quotients": {name: bounded.fold(x, key).number_of_nodes() for name, key in PROJECTIONS.items()}}


def state_space_summary(x: Exploration) -> str:
    d = state_space_data(x)
    folds = ", ".join(f"{n} by {name}" for name, n in d["quotients"].items())
    broken = ", ".join(d["broken"]) or "none"
    from gmemlab.render.text import wrap
    return wrap(f"{x.config.label()} at {x.bounds.pages} page(s): {d['states']:,} states, "
                f"{d['transitions']:,} transitions; quotients: {folds}. Broken: {broken}.", "")


# --- 02 compare -------------------------------------------------------------------------------

def compare_view(table: Comparison, focus: str, against: str = "private-first", engine: str = "auto") -> str:
    """The matrix with ``focus`` against ``against``, and their quotients overlaid."""
    a, b = column(table, focus).exploration, column(table, against).exploration
    return (H.compare_html(table, focus, against)
            + draw(bounded.difference_view(a, b), engine).html(max_height=None))


def precomputed_compare(platform: str = "snp", pages: int = 1, knobs=None, series: tuple = SERIES,
                        focus: tuple | None = None, against: str = "private-first",
                        default: tuple = ("v8", "userspace-converts"), engine: str = "auto") -> str:
    """Every series x focus combination rendered, switched without a kernel (CSS radios);
    focus: every proposal known (built-ins and registered variants) unless named."""
    focus = proposal_names() if focus is None else tuple(focus)
    panes = {}
    for s in series:
        table = comparison(platform, s, pages, knobs)
        for f in focus:
            panes[(s, f)] = compare_view(table, f, against, engine)
    default = (default[0] if default[0] in series else series[0],
               default[1] if default[1] in focus else focus[0])
    return H.toggle_html([("series", list(series)), ("focus", list(focus))], panes, default,
                         title=f"{platform}, {pages} page(s), against {against}: precomputed for the exported page")


def matrix_data(table: Comparison) -> dict:
    """The matrix values (row -> proposal -> cell), as the notebook reports them."""
    names = [c.proposal for c in table.columns]
    return {row: dict(zip(names, cells)) for row, cells in H.matrix_rows(table)}


def matrix_summary(table: Comparison, focus: str | None = None, against: str | None = None) -> str:
    """A few lines of text, from the matrix's own data: per proposal, the
    invariants explore checks that it breaks (ALWAYS) and whether the reference VMM recovers (vmm_recovers:
    where it gives up, and how many failing outcomes it cannot attribute); then what
    differs between two proposals, vmm_recovers included.

    >>> t = comparison("snp", "v8", 1)
    >>> print(matrix_summary(t, "populate-converts", "private-first"))  # doctest: +NORMALIZE_WHITESPACE
    private-first: keeps every invariant explore checks; the reference VMM recovers from every failure.
    populate-converts: keeps every invariant explore checks; the reference VMM cannot recover (vmm_recovers: gives up on populate EIO; failures it cannot attribute: 1).
    userspace-converts: breaks te_private_implies_kvm_private, host_never_touches_te_private, populate_targets_private; the reference VMM recovers from every failure.
    populate-converts against private-first: breaks 1 invariant(s) that private-first keeps (vmm_recovers), keeps 0 that it breaks.
    """
    from gmemlab.render.text import GUESSING_ROW, wrap
    broken, lines = {}, []
    for c in table.columns:
        safety = [p.name for p in ALWAYS if not c.exploration.holds(p.name)]
        text = f"breaks {', '.join(safety)}" if safety else "keeps every invariant explore checks"
        r = c.recovery
        broken[c.proposal] = safety + ([VMM_RECOVERS.name] if r is not None and not r.holds else [])
        if r is not None and r.holds:
            text += "; the reference VMM recovers from every failure"
        elif r is not None:
            guessing = c.to_json()["guessing"]
            text += (f"; the reference VMM cannot recover ({VMM_RECOVERS.name}: gives up on {r.gives_up_on}"
                     + (f"; {GUESSING_ROW}: {len(guessing)}" if guessing else "") + ")")
        lines.append(wrap(f"{c.proposal}: {text}.", ""))
    if focus and against and focus != against:
        only = [n for n in broken[focus] if n not in broken[against]]
        kept = [n for n in broken[against] if n not in broken[focus]]
        lines.append(wrap(f"{focus} against {against}: breaks {len(only)} invariant(s) that {against} "
                          f"keeps" + (f" ({', '.join(only)})" if only else "") + f", keeps {len(kept)} that "
                          f"it breaks" + (f" ({', '.join(kept)})" if kept else "") + ".", ""))
    return "\n".join(lines)


# --- 03 counterexamples ---------------------------------------------------------------------

def trace_text(cfg: Config, events: list, description: str) -> str:
    """A gmemlab-trace/1 file that check-trace replays to the same outcomes."""
    from gmemlab.traces.format import dumps
    header = {"platform": cfg.platform, "series": cfg.series, "page_size": cfg.page_size,
              "source": "emulated", "description": description}
    return dumps(header, events)


@dataclass
class Counterexample:
    proposal: str
    invariant: str
    claim: str
    source: str
    events: list
    lanes: object
    trace: str
    knobs: dict = field(default_factory=dict)

    @property
    def steps(self) -> str:
        return steps_text(self.events, "  ")

    def html(self) -> str:
        replay = f"gmemlab check-trace {self.invariant}.jsonl --proposal {self.proposal}"
        return (f'<div class="gml-cx" data-proposal="{self.proposal}" data-invariant="{self.invariant}">'
                f"<h4>{H.esc(self.proposal)} breaks <code>{self.invariant}</code></h4>"
                f"<p>{H.esc(self.claim)}<br><span style='font-size:85%'>source: {H.esc(self.source)}</span></p>"
                f"<p>The shortest counterexample, {len(self.events)} calls:</p>" + H.steps_html(self.events)
                + lanes_html(self.lanes)
                + f"<details><summary>trace file (replay: <code>{H.esc(replay)}</code>)</summary>"
                + H.pre(self.trace) + "</details></div>")

    def text(self) -> str:
        return (f"{self.proposal} breaks {self.invariant}: {self.claim}\n{self.steps}\n\n"
                + lanes_text(self.lanes) + "\n")


def counterexamples(x: Exploration) -> list[Counterexample]:
    """One Counterexample per broken invariant of an exploration, in docs/domain.md's order."""
    cfg = x.config
    out = []
    for p in ALWAYS:
        events = x.counterexample(p.name)
        if events is None:
            continue
        notes = {len(events) - 1: [p.name]} if p.graph else None
        desc = (f"{p.name} broken by {cfg.label()} at {x.bounds.pages} page(s): {p.claim} "
                f"(shortest counterexample found by gmemlab explore)")
        out.append(Counterexample(cfg.proposal, p.name, p.claim, p.source, events,
                                  compute(cfg, events, notes=notes), trace_text(cfg, events, desc)))
    return out


def counterexamples_html(found: dict) -> str:
    """Every counterexample, proposal by proposal ({proposal: [Counterexample]})."""
    parts = []
    for name, cxs in found.items():
        parts.append(f"<h3>{H.esc(name)}</h3>" + proposal_html(name))
        parts += [cx.html() for cx in cxs] or ["<p>No invariant explore checks breaks at this size.</p>"]
    return "".join(parts)


def counterexamples_text(found: dict) -> str:
    blocks = []
    for name, cxs in found.items():
        blocks += [cx.text() for cx in cxs] or [f"{name}: no invariant explore checks breaks at this size\n"]
    return "\n".join(blocks)


def counterexamples_data(found: dict) -> dict:
    from gmemlab.traces.format import event_json
    return {name: {cx.invariant: {"steps": len(cx.events), "trace": cx.trace,
                                  "events": [event_json(e) for e in cx.events],
                                  "broken_at": [k + 1 for k in range(len(cx.events)) if cx.lanes.marks(k)]}
                   for cx in cxs} for name, cxs in found.items()}


def counterexamples_summary(found: dict, platform: str, series: str, pages: int) -> str:
    from gmemlab.render.text import wrap
    lines = [f"{platform}, series {series}, {pages} page(s):"]
    for name, cxs in found.items():
        what = ", ".join(f"{cx.invariant} ({len(cx.events)} calls)" for cx in cxs) or "no invariant explore checks"
        lines.append(wrap(f"{name} breaks {what}", "  "))
    return "\n".join(lines)


def proposal_html(name: str) -> str:
    return (f"<p><b>{H.esc(name)}</b>: {H.esc(proposal_claim(name))}<br>"
            f"<span style='font-size:85%'>source: {H.esc(proposal_source(name))}</span></p>")


# --- 04 conformance ---------------------------------------------------------------------------

def trace_files(paths) -> list[str]:
    """Trace files named by a file, a folder (every *.jsonl below it, sorted) or a list."""
    if isinstance(paths, str):
        paths = [p.strip() for p in paths.split(",") if p.strip()]
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs if f.endswith(".jsonl"))
        elif os.path.exists(p):
            out.append(p)
        else:
            raise FileNotFoundError(f"no trace file or folder {p!r}")
    return sorted(dict.fromkeys(out))


def _manifest_for(path: str) -> tuple[dict, str] | None:
    """The manifest.json of the folder a trace sits in, or of the folder above it
    (data/traces/manifest.json covers data/traces/*/), and that folder; never further up.
    A manifest that is not a JSON object is an InputError naming it."""
    import json
    d = os.path.dirname(os.path.abspath(path))
    for folder in (d, os.path.dirname(d)):
        m = os.path.join(folder, "manifest.json")
        if os.path.isfile(m):
            try:
                with open(m, encoding="utf-8") as f:
                    data = json.load(f)
            except (OSError, ValueError) as e:
                raise InputError(m, 0, f"not a manifest: {e}") from None
            if not isinstance(data, dict):
                raise InputError(m, 0, "not a manifest: the top level must be an object")
            return data, folder
    return None


def _expected_verdict(manifest: dict, name: str, proposal: str) -> str | None:
    """The verdict a manifest records for a trace under a proposal: a string, or an
    object's "verdict" string; anything else records nothing."""
    entry = manifest.get(name)
    exp = entry.get(proposal) if isinstance(entry, dict) else None
    if isinstance(exp, dict):
        exp = exp.get("verdict")
    return exp if isinstance(exp, str) else None


# Traces of files larger than this are not drawn as lanes nor walked page by page.
LANE_PAGES = 64


def _largest_file(events: list, cfg: Config) -> int:
    return max((ev["size"] // cfg.page_size for ev in events if ev["op"] == "create_gmem"), default=0)


def page_key(p) -> str:
    """A page's abstract state for coverage: attribute/TE and what reaches it."""
    parts = [("P" if p.private else "S") + "/" + TE_NAMES[p.te]]
    if p.allocated:
        parts.append("alloc")
    if p.mapped:
        parts.append("mapped")
    if p.pins:
        parts.append("pinned")
    if p.measured:
        parts.append("measured")
    return " ".join(parts)


@dataclass
class TraceResult:
    path: str
    name: str
    header: dict
    events: list
    config: Config
    report: object
    expected: str | None

    @property
    def verdict(self) -> str:
        return H.verdict_of(self.report)

    def row(self) -> dict:
        return {"trace": self.name, "verdict": self.verdict, "expected": self.expected,
                "description": self.header.get("description", ""),
                "events": self.report.events, "divergence": self.report.divergence,
                "violations": self.report.violations}


@dataclass
class Conformance:
    proposal: str
    results: list
    ops: Counter
    outcomes: Counter
    seen: dict        # (platform, series) -> Counter of page_key
    reachable: dict   # (platform, series) -> set of page_key reachable at 1 page

    def verdicts(self) -> dict:
        return {r.name: r.verdict for r in self.results}


def _outcome_kind(out: dict) -> str:
    if "ret" in out:
        return "0" if out["ret"] == 0 else str(out["ret"])
    for k in ("signal", "exit", "exception"):
        if k in out:
            return out[k]
    return "ok"


def conformance(paths, proposal: str = "private-first", series: str | None = None, knobs=None) -> Conformance:
    """Replay every trace under one proposal; collect verdicts and coverage."""
    from gmemlab.model.step import OPS
    from gmemlab.traces.format import load
    from gmemlab.traces.replay import config_for, replay
    from gmemlab.traces.walk import walk
    kd = knob_dict(knobs)
    results, ops, outcomes, seen = [], Counter(), Counter(), {}
    for path in trace_files(paths):
        header, events = load(path)
        cfg = config_for(header, proposal, series, **kd)
        report = replay(cfg, events, path)
        man = _manifest_for(path)
        name, expected = os.path.basename(path), None
        if man is not None:
            name = os.path.relpath(os.path.abspath(path), man[1])
            expected = _expected_verdict(man[0], name, proposal)
        results.append(TraceResult(path, name, header, events, cfg, report, expected))
        keys = seen.setdefault((cfg.platform, cfg.series), Counter())
        ops.update(ev["op"] for ev in events)
        if _largest_file(events, cfg) > LANE_PAGES:
            continue  # a guest-scale trace: its ops count, its pages are not walked one by one
        for st in walk(cfg, events, engine="pages"):
            outcomes[(st.event["op"], _outcome_kind(st.outcome))] += 1
            keys.update(page_key(p) for p in st.post.pages)
    for op in OPS:
        ops.setdefault(op, 0)
    reachable = {}
    for platform, ser in sorted(seen):
        x = exploration(proposal, platform, ser, 1, kd)
        reachable[(platform, ser)] = {page_key(p) for s in x.states for p in s.pages}
    return Conformance(proposal, results, ops, outcomes, seen, reachable)


def divergence_html(r: TraceResult, before: int = 3, after: int = 1) -> str:
    """The first divergence of a trace, with the lanes of the steps around it."""
    d = r.report.divergence
    if d is None:
        return ""
    k = next(i for i, ev in enumerate(r.events) if ev["line"] == d["line"])
    head = (f'<div class="gml-divergence" data-trace="{H.esc(r.name)}" data-line="{d["line"]}">'
            f"<h4>{H.esc(r.name)}: line {d['line']} ({d['op']})</h4>"
            f"<p style='font-size:85%'>{H.esc(r.header.get('description', ''))}</p>"
            f"<p>expected <code>{H.esc(str(d['expected']))}</code>, the model of "
            f"<code>{H.esc(r.config.label())}</code> predicts <code>{H.esc(str(d['predicted']))}</code></p>")
    if _largest_file(r.events, r.config) > LANE_PAGES:
        return head + "<p>(too many pages to draw the lanes)</p></div>"
    mark = {k: [f"diverges: expected {d['expected']}, predicted {d['predicted']}"]}
    lanes = compute(r.config, r.events, notes=mark, by_line=True).window(k, before, after)
    note = r.events[k].get("note")
    return (head + (f"<p>note in the trace: {H.esc(note)}</p>" if note else "")
            + "<p>The events around it, numbered by their line in the trace (hover a column "
            "for the call and the model's outcome):</p>"
            + H.steps_html([dict(ev, expect=o) for ev, o in zip(lanes.events, lanes.outcomes)],
                           [ev["line"] for ev in lanes.events])
            + lanes_html(lanes) + "</div>")


def divergences_html(c: Conformance) -> str:
    parts = [divergence_html(r) for r in c.results if r.report.divergence is not None]
    return "".join(parts) or "<p>No trace diverges.</p>"


def conformance_summary(c: Conformance) -> str:
    from gmemlab.render.text import wrap
    counts = Counter(r.verdict for r in c.results)
    lines = [wrap(f"{len(c.results)} traces replayed as {c.proposal}: "
                  + ", ".join(f"{counts[v]} {v}" for v in ("conforms", "violates", "diverges")), "")]
    expected = [r for r in c.results if r.expected is not None]
    if expected:
        agree = sum(r.expected == r.verdict for r in expected)
        lines.append(f"{agree} of {len(expected)} agree with the manifest.")
    never = [op for op, n in sorted(c.ops.items()) if n == 0]
    lines.append(wrap("ops never exercised: " + (", ".join(never) or "none"), ""))
    return "\n".join(lines)


def coverage_html(c: Conformance) -> str:
    """Ops and outcomes the traces exercised, and per-page states seen vs reachable."""
    ops = dict(sorted(c.ops.items()))
    never = [op for op, n in ops.items() if n == 0]
    out = [H.counts_html("events per op", {k: v for k, v in ops.items() if v}, never)]
    by_op: dict[str, list[str]] = {}
    for (op, kind), n in sorted(c.outcomes.items()):
        by_op.setdefault(op, []).append(f"{kind} x{n}")
    out.append(H.counts_html("outcomes per op", {op: ", ".join(v) for op, v in by_op.items()}))
    for key in sorted(c.seen):
        seen, reach = set(c.seen[key]), c.reachable[key]
        missing = sorted(reach - seen)
        extra = sorted(seen - reach)
        out.append(f'<div class="gml-coverage" data-platform="{key[0]}" data-series="{key[1]}" '
                   f'data-seen="{len(seen & reach)}" data-reachable="{len(reach)}">'
                   f"<b>{key[0]} {key[1]}</b>: the traces put pages in {len(seen & reach)} of the "
                   f"{len(reach)} per-page states that {H.esc(c.proposal)} reaches at 1 page"
                   + (f"; never: <code>{H.esc('; '.join(missing))}</code>" if missing else "")
                   + (f"; beyond 1 page only: <code>{H.esc('; '.join(extra))}</code>" if extra else "")
                   + "</div>")
    return "".join(out)


def conformance_data(c: Conformance) -> dict:
    return {"proposal": c.proposal, "verdicts": c.verdicts(),
            "expected": {r.name: r.expected for r in c.results},
            "divergences": {r.name: r.report.divergence["line"] for r in c.results if r.report.divergence},
            "ops": dict(sorted(c.ops.items())),
            "coverage": {f"{p}/{s}": [len(set(c.seen[(p, s)]) & c.reachable[(p, s)]), len(c.reachable[(p, s)])]
                         for p, s in sorted(c.seen)}}


# --- 05 reply ---------------------------------------------------------------------------------

def reply(platform: str = "snp", series: str = "v8", pages: int = 1, knobs=None,
          proposal: str | None = None, invariant: str | None = None) -> tuple[str, str]:
    """(plain text, HTML) of the reply for one configuration."""
    from gmemlab.render.reply import reply_html, reply_text
    table = comparison(platform, series, pages, knobs)
    proposal = proposal or None
    invariant = invariant or None
    return reply_text(table, proposal, invariant), reply_html(table, proposal, invariant)


def recovery_html(platform: str = "snp", series: str = "v8", pages: int = 1, knobs=None) -> str:
    """What each proposal's reference VMM recovers from, for one configuration."""
    from gmemlab.render.reply import recovery_html as rh
    return rh(comparison(platform, series, pages, knobs))


def recovery_data(platform: str = "snp", series: str = "v8", pages: int = 1, knobs=None) -> dict:
    """proposal -> {"holds", "gives_up_on", "steps", "guessing"}."""
    out = {}
    for c in comparison(platform, series, pages, knobs).columns:
        d = c.to_json()
        r = d["vmm_recovers"]
        out[c.proposal] = {"holds": r["holds"], "gives_up_on": r["gives_up_on"],
                           "steps": r["counterexample_length"], "guessing": d["guessing"]}
    return out


def reply_data(text: str, html: str, platform: str, series: str, pages: int, knobs, proposal: str, invariant: str) -> dict:
    from gmemlab.render.reply import pick_counterexample
    pick = pick_counterexample(comparison(platform, series, pages, knobs), proposal or None, invariant or None)
    from gmemlab.render.reply import is_link_line
    lines = text.splitlines()
    # width: of the prose; a line that is only a link is never broken
    width = max(len(line) for line in lines if not is_link_line(line))
    return {"text": text, "html": html, "lines": len(lines), "width": width, "ascii": text.isascii(),
            "platform": platform, "series": series, "pages": pages,
            "proposal": pick and pick[0], "invariant": pick and pick[1], "steps": pick and len(pick[2])}


def reply_summary(d: dict) -> str:
    what = (f"counterexample: {d['proposal']} breaks {d['invariant']} in {d['steps']} calls"
            if d["proposal"] else "no counterexample at this size")
    return (f"{d['lines']} lines, at most {d['width']} columns, "
            f"{'ASCII' if d['ascii'] else 'NOT ASCII'}; {what}.")


def invariant_names() -> list[str]:
    return [p.name for p in ALWAYS]


def claim(name: str) -> str:
    return PROPERTIES[name].claim


# --- what a notebook hands back -------------------------------------------------------------

def save_results(path: str, data: dict) -> None:
    """Write a notebook's results as JSON (atomically) when a path is given (papermill,
    the report and the tests pass one; interactive use leaves it empty)."""
    if not path:
        return
    import json
    from gmemlab.fsutil import atomic_write
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")
