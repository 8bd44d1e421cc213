"""Races: which interleavings break which invariant, knob by knob (notebook 07).

Each proposal is explored with its calls interleaved (Bounds.interleave threads,
gmemlab.model.threads) once with none of the race knobs and once with each of them on,
and once with atomic calls: an invariant that the atomic model breaks as well is no
race (notebook 03 shows it), one that only the interleavings break is. A race a knob
brings in is explained by what the knob changes in the kernel (WHY) and by the
counterexample's own steps (overlap_text: which calls of the other threads ran while
the call that ends it was in flight), and drawn as thread lanes (render.thread_lanes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gmemlab.invariants import ALWAYS, PROPERTIES
from gmemlab.render.html import esc
from gmemlab.render.text import call_text, wrap

RACE_KNOBS = ("gup_fast_no_recheck", "check_before_unmap", "populate_holds_lock")
NONE = "none"   # the column with none of the race knobs on

# What each knob changes against the kernel's order, and so which race it lets in.
WHY = {
    "gup_fast_no_recheck": (
        "GUP-fast takes its reference on the folio it found and then reads the page table "
        "entry again, dropping the reference if the entry changed (mm/gup.c, "
        "gup_fast_pte_range: try_grab_folio, then the re-check). Without the re-check a "
        "conversion that unmaps the page and checks its references between GUP-fast's two "
        "steps does not see the reference, and the page turns private with a pin on it."),
    "check_before_unmap": (
        "The conversion checks the folio's references after it unmaps the host's page "
        "tables (unmap_mapping_pages, then the refcount check, in the in-place conversion "
        "of virt/kvm/guest_memfd.c). Checked first, a reference taken through the mapping "
        "that is still there, between the check and the unmap, is missed."),
    "populate_holds_lock": (
        "kvm_gmem_populate (virt/kvm/guest_memfd.c) takes the invalidate lock for each page "
        "and drops it between pages, so another thread's conversion or punch can run between "
        "two pages of one populate; the knob holds the lock from the first page to the last. "
        "With one page there is no 'between': the knob changes nothing."),
}


# The assumptions the interleavings rest on (gmemlab.model.threads cites them).
ASSUMED = ("A-speculative-ref", "A-guest-fault-waits")


@dataclass
class Run:
    """One exploration: a proposal on a platform with one knob setting."""

    proposal: str
    platform: str
    setting: str                 # NONE, a knob name, or "atomic"
    states: int
    transitions: int
    broken: dict                 # invariant -> its shortest counterexample (events)


@dataclass
class Races:
    """The explorations of one matrix and what they found."""

    series: str
    pages: int
    threads: int
    knobs: tuple
    runs: dict = field(default_factory=dict)   # (platform, proposal, setting) -> Run

    def settings(self) -> list[str]:
        return [NONE] + list(self.knobs)

    def cells(self):
        """(platform, proposal) pairs, in the order explored."""
        seen = []
        for plat, prop, _ in self.runs:
            if (plat, prop) not in seen:
                seen.append((plat, prop))
        return seen

    def kind(self, plat: str, prop: str, setting: str, inv: str) -> str:
        """'holds'; 'atomic' (the atomic model breaks it too: no race); 'race' (only the
        interleavings break it, with no knob); 'knob' (only with this knob on)."""
        if inv not in self.runs[(plat, prop, setting)].broken:
            return "holds"
        if inv in self.runs[(plat, prop, "atomic")].broken:
            return "atomic"
        if setting != NONE and inv not in self.runs[(plat, prop, NONE)].broken:
            return "knob"
        return "race"

    def invariants(self) -> list[str]:
        """The invariants some run breaks, in docs/domain.md's order."""
        hit = {inv for r in self.runs.values() for inv in r.broken}
        return [p.name for p in ALWAYS if p.name in hit]


def explore_races(proposals, platforms, series: str = "v8", pages: int = 1, threads: int = 2,
                  knobs=RACE_KNOBS) -> Races:
    """Explore every proposal x platform atomically, interleaved with no knob, and
    interleaved with each knob on."""
    from gmemlab.explore import explore
    from gmemlab.model.state import Config
    from gmemlab.errors import UsageError
    from gmemlab.spec import Bounds
    unknown = [k for k in knobs if k not in RACE_KNOBS]
    if unknown:
        raise UsageError(f"not a race knob: {', '.join(map(str, unknown))}; known: {', '.join(RACE_KNOBS)}")
    if Bounds(pages=pages, interleave=threads).interleave == 0:   # Bounds checks the range
        raise UsageError("threads must be 1..3 (0 is the atomic model, explored anyway)")
    out = Races(series, pages, threads, tuple(knobs))
    for plat in platforms:
        for prop in proposals:
            for setting in ["atomic"] + out.settings():
                on = {setting: True} if setting in RACE_KNOBS else {}
                x = explore(Config(proposal=prop, platform=plat, series=series, **on),
                            Bounds(pages=pages, interleave=0 if setting == "atomic" else threads))
                broken = {p.name: cx for p in ALWAYS if (cx := x.counterexample(p.name)) is not None}
                out.runs[(plat, prop, setting)] = Run(prop, plat, setting, len(x.states), x.transitions, broken)
    return out


def _spans(events: list) -> list[tuple[str, dict, int, int | None]]:
    """Each threaded call that runs: (thread, its event, its first step after the begin,
    the step it ended or None), in the order of their first steps. A call begun and
    never run is none of them (render.thread_lanes.unrun: its begin only records it,
    and the lanes leave it out); a call is in flight from its first step, not from its
    begin, which the search takes early (Spec.ample)."""
    calls, open_ = [], {}
    for n, ev in enumerate(events, 1):
        t = ev.get("thread")
        if t is None:
            continue
        exp = ev.get("expect", {})
        if ev["op"] != "run":
            if exp.get("pending"):
                open_[t] = [t, ev, None, None]
            continue
        if t not in open_:
            continue
        call = open_[t]
        if call[2] is None:
            call[2] = n
            calls.append(call)
        if not (exp.get("pending") or exp.get("blocked")):
            call[3] = n
            del open_[t]
    return [tuple(c) for c in calls]


def overlap_text(events: list) -> str:
    """What the steps show: each call that another thread's calls ran inside of, with
    those calls (steps first-last, from the call's first step after its begin; "on":
    still in flight when the counterexample ends). Calls begun and never run are left
    out, as in the lanes."""
    spans = _spans(events)

    def when(c):
        return f"step {c[2]}" if c[2] == c[3] else f"steps {c[2]}-{c[3] if c[3] else 'on'}"

    parts = []
    for i, a in enumerate(spans):
        end = a[3] if a[3] else len(events)
        inside = [b for b in spans[i + 1:] if b[0] != a[0] and b[2] <= end]
        if inside:
            parts.append(f"{a[0]}'s {call_text(a[1])} ({when(a)}) overlaps "
                         + _and([f"{b[0]}'s {call_text(b[1])} ({when(b)})" for b in inside]))
    if not parts:
        return "No two calls of different threads overlap."
    return "; ".join(parts) + "."


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def why_text(races: Races, plat: str, prop: str, setting: str, inv: str) -> str:
    """A sentence or two on why this verdict is broken."""
    kind = races.kind(plat, prop, setting, inv)
    if kind == "atomic":
        return "The atomic model breaks it too: not a race (notebook 03 shows its counterexample)."
    if kind == "race":
        return "Only the interleavings break it, with none of the race knobs on."
    return f"Only with {setting} on. " + WHY[setting]


# --- output ---------------------------------------------------------------------------------

_LABEL = {"atomic": "atomic", NONE: "none", "gup_fast_no_recheck": "no re-check", "check_before_unmap": "check first",
          "populate_holds_lock": "pop. lock"}
_STYLE = {"holds": "", "atomic": "background:#eee;color:#555", "race": "background:#f6c9c9",
          "knob": "background:#f6c9c9;font-weight:bold"}


def matrix_html(races: Races) -> str:
    """Rows: states and every invariant some run breaks; columns: per platform x proposal,
    the knob settings. A cell: holds, or BROKEN n (n steps in the shortest counterexample).
    Under it, at one page, the note of one_page_note."""
    sets = ["atomic"] + races.settings()
    cells = races.cells()
    head1 = "<th></th>" + "".join(f'<th colspan="{len(sets)}" style="border-left:2px solid #888">'
                                  f"{esc(prop)}<br><span style='font-weight:normal'>{esc(plat)}</span></th>"
                                  for plat, prop in cells)
    edge = ";border-left:2px solid #888"
    head2 = "<th style='text-align:left'>knob on</th>" + "".join(
        f'<th title="{esc(s)}" style="font-weight:normal;padding:1px 4px{edge if j == 0 else ""}">'
        f"{esc(_LABEL.get(s, s))}</th>" for _ in cells for j, s in enumerate(sets))
    rows = ["<tr>" + head1 + "</tr>", "<tr>" + head2 + "</tr>"]
    states = "".join(f'<td style="text-align:right;padding:1px 4px">{races.runs[(plat, prop, s)].states:,}</td>'
                     for plat, prop in cells for s in sets)
    rows.append("<tr><td>states</td>" + states + "</tr>")
    for inv in races.invariants():
        tds = []
        for plat, prop in cells:
            for s in sets:
                kind = races.kind(plat, prop, s, inv)
                cx = races.runs[(plat, prop, s)].broken.get(inv)
                text = "holds" if cx is None else f"BROKEN {len(cx)}"
                tds.append(f'<td data-kind="{kind}" style="{_STYLE[kind]};padding:1px 4px;'
                           f'text-align:center">{text}</td>')
        rows.append(f'<tr><td title="{esc(PROPERTIES[inv].claim)}"><code>{esc(inv)}</code></td>'
                    + "".join(tds) + "</tr>")
    legend = ("atomic: every call one step; none: interleaved, no race knob on. BROKEN n: the "
              "shortest counterexample has n steps. Red: only interleavings break it (bold: only "
              "with that knob on); grey: the atomic model breaks it too. Every invariant not "
              "listed holds in every column. Knobs: "
              + "; ".join(f"{_LABEL[k]} = {k}" for k in races.knobs) + ".")
    note = one_page_note(races)
    note = f'<p class="gml-one-page" style="font-size:90%"><i>{esc(note)}</i></p>' if note else ""
    return ('<div class="gml-races"><table style="border-collapse:collapse;font-size:90%">'
            + "".join(rows) + f'</table><div style="font-size:85%;color:#555">{esc(legend)}</div>{note}</div>')


def counterexamples_html(races: Races) -> str:
    """Every verdict that only interleavings break, as lanes, with why."""
    from gmemlab.render.thread_lanes import lanes_html
    parts = []
    for plat, prop in races.cells():
        for s in races.settings():
            for inv, cx in races.runs[(plat, prop, s)].broken.items():
                if races.kind(plat, prop, s, inv) == "atomic":
                    continue
                parts.append(
                    f'<div class="gml-race" data-proposal="{esc(prop)}" data-platform="{esc(plat)}" '
                    f'data-knob="{esc(s)}" data-invariant="{esc(inv)}">'
                    f"<h4>{esc(prop)} on {esc(plat)}, {esc(s if s != NONE else 'no knob')}: breaks "
                    f"<code>{esc(inv)}</code> in {len(cx)} steps</h4>"
                    f"<p>{esc(PROPERTIES[inv].claim)}</p>"
                    f"<p>{esc(why_text(races, plat, prop, s, inv))}</p>"
                    f"<p><i>In the steps:</i> {esc(overlap_text(cx))}</p>" + lanes_html(cx) + "</div>")
    return "".join(parts) or "<p>No interleaving breaks an invariant the atomic calls keep.</p>"


def race_data(races: Races) -> dict:
    """The matrix as JSON: platform -> proposal -> setting -> states, transitions, and
    each broken invariant's counterexample length and kind."""
    out: dict = {}
    for (plat, prop, s), r in races.runs.items():
        out.setdefault(plat, {}).setdefault(prop, {})[s] = {
            "states": r.states, "transitions": r.transitions,
            "broken": {inv: {"steps": len(cx), "kind": races.kind(plat, prop, s, inv)}
                       for inv, cx in r.broken.items()}}
    return {"series": races.series, "pages": races.pages, "threads": races.threads,
            "knobs": list(races.knobs), "runs": out}


def assumptions_html() -> str:
    """The assumptions of the interleavings (ASSUMED), in the words of
    gmemlab.model.assumptions."""
    from gmemlab.model.assumptions import ASSUMPTIONS
    from gmemlab.render.html import sources_html
    return sources_html([(a, ASSUMPTIONS[a]) for a in ASSUMED], "Assumptions of the interleavings")


def one_page_note(races: Races) -> str:
    """At one page populate_holds_lock changes nothing (WHY): a note saying that its
    column repeats "none", with what the runs found; "" otherwise."""
    if races.pages != 1 or "populate_holds_lock" not in races.knobs:
        return ""
    same = all(races.runs[(plat, prop, "populate_holds_lock")].broken.keys()
               == races.runs[(plat, prop, NONE)].broken.keys()
               and races.runs[(plat, prop, "populate_holds_lock")].states == races.runs[(plat, prop, NONE)].states
               for plat, prop in races.cells())
    return (f'At 1 page the "{_LABEL["populate_holds_lock"]}" column (populate_holds_lock) is necessarily '
            f'the same as "{_LABEL[NONE]}": a populate of one page takes the lock once, so there is no '
            f"'between pages' for the knob to hold it across; "
            + ("the runs agree (same states, same invariants broken)." if same else
               "yet the runs differ here (states or invariants): see the matrix.")
            + " Set race_pages = 2 to tell them apart (minutes a run).")


def headline(races: Races) -> str:
    """The result in one or two sentences: what the interleavings break with no knob
    on, and what each knob brings in (invariants the atomic calls break too are none
    of it)."""
    cells = races.cells()
    plain = [(plat, prop, inv) for plat, prop in cells for inv in races.runs[(plat, prop, NONE)].broken
             if races.kind(plat, prop, NONE, inv) == "race"]
    where = f"{races.threads} thread(s), {races.pages} page(s), {len(cells)} proposal x platform pair(s)"
    if plain:
        first = ("With no race knob on, interleavings break invariants the atomic calls keep ("
                 f"{where}): " + ", ".join(f"{inv} ({prop} on {plat})" for plat, prop, inv in plain) + ".")
    else:
        first = (f"With no race knob on, no interleaving breaks an invariant the atomic calls keep ({where}).")
    per_knob = []
    for k in races.knobs:
        invs = [inv for inv in races.invariants()
                if any(races.kind(plat, prop, k, inv) == "knob" for plat, prop in cells)]
        per_knob.append(f"{k} breaks {', '.join(invs) if invs else 'nothing'}")
    return first + (" With a knob on: " + "; ".join(per_knob) + "." if per_knob else "")


def race_summary(races: Races) -> str:
    """The races in a few lines of text (72 columns): the headline, then per proposal
    and platform."""
    lines = [wrap(headline(races), ""), "",
             f"series {races.series}, {races.pages} page(s), {races.threads} threads:"]
    for plat, prop in races.cells():
        found = [(s, inv) for s in races.settings() for inv in races.runs[(plat, prop, s)].broken
                 if races.kind(plat, prop, s, inv) != "atomic"]
        what = ", ".join(f"{inv} ({s if s != NONE else 'no knob'})" for s, inv in found) or "none"
        lines.append(wrap(f"{prop} on {plat}: races: {what}", "  "))
    return "\n".join(lines)
