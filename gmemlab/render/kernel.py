"""The kernel as the oracle, for notebook 04: the trace corpus run on the running kernel
(/dev/kvm, gmemlab.kvm) beside the model of platform "default", event by event.

``kernel_conformance(paths)`` runs each trace on a KVM default VM as ``gmemlab kvm-run``
does (gmemlab.kvm.differential.judge: the events until the first one the kernel cannot
express, each with the kernel's outcome), then walks the recording through the model of
platform "default" and pairs the two outcomes per event. ``kernel_conformance_html``
shows the kernel release and capabilities, one row per trace (how far it ran, where and
why it stopped, whether kernel and model agree) and, folded under it, one row per event
(line, call, kernel outcome, model outcome, agree?). ``kernel_conformance_data`` is the
JSON form, ``kernel_conformance_summary`` the plain text.

Without /dev/kvm (or when it refuses) nothing runs and the view says so:

>>> kc = kernel_conformance([], device="/nonexistent/kvm")
>>> kc.ran, "the kernel oracle did not run" in kernel_conformance_html(kc)
(False, True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from gmemlab.outcome import outcome_text
from gmemlab.render import html as H

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# What tests/test_kvm.py runs on the kernel: the hand-written corpus and the emulated one.
CORPUS = (os.path.join(ROOT, "data", "traces"), os.path.join(ROOT, "data", "emulated"))
NOT_RUN = "the kernel oracle did not run"
AGREE, DISAGREE = "#dff3df", "#f6c9c9"
_TD = "padding:1px 6px;text-align:left;vertical-align:top"
_MONO = _TD + ";font-family:monospace"

VCPU_MEMORY_PATH = {
    "guest_memfd": "the vCPU faults guest memory through kvm_gmem_get_pfn, as with hardware virtualization",
    "userspace_addr": "the vCPU reaches guest memory through the memslot's userspace_addr (an emulated vCPU, "
                      "e.g. kvm_pvm without VMX/SVM): a guest access to a guest_memfd without INIT_SHARED "
                      "ends a run there, since the host mapping it goes through refuses it",
}


@dataclass
class KernelRun:
    """One trace on the kernel: its events run, each with both outcomes; where it stopped."""

    path: str
    name: str
    events: int                                 # in the trace
    rows: list = field(default_factory=list)    # {"line", "op", "call", "kernel", "model", "agree"}; outcomes
    #                                             as gmemlab.model.step gives them (byte values as ints)
    stopped: dict | None = None                 # {"line", "op", "why"}: the event that ended the run
    error: str | None = None                    # the trace could not be run at all

    @property
    def supported(self) -> bool:
        """The kernel ran the trace, in whole or as a prefix (at least one event)."""
        return bool(self.rows)

    @property
    def whole(self) -> bool:
        return self.supported and self.stopped is None and self.error is None

    @property
    def disagreements(self) -> list:
        return [r for r in self.rows if not r["agree"]]

    @property
    def agree(self) -> bool:
        return not self.disagreements


@dataclass
class KernelConformance:
    """The corpus on the kernel: ``ran`` is False (and ``why`` says why) without /dev/kvm."""

    device: str
    ran: bool
    why: str = ""
    kernel: str = ""
    capabilities: dict = field(default_factory=dict)
    vcpu_memory_path: str = ""
    pin: str = ""
    runs: list = field(default_factory=list)    # KernelRun, one per trace file

    @property
    def supported(self) -> list:
        return [r for r in self.runs if r.supported]

    @property
    def unsupported(self) -> list:
        return [r for r in self.runs if not r.supported]

    @property
    def agree(self) -> bool:
        return all(r.agree for r in self.runs)


def trace_name(path: str) -> str:
    """A file's name as tests/test_kvm.py names it: relative to the repository when inside it.

    >>> trace_name(os.path.join(ROOT, "data", "traces", "selftests", "flags.jsonl"))
    'data/traces/selftests/flags.jsonl'
    >>> trace_name("/tmp/t.jsonl")
    '/tmp/t.jsonl'
    """
    p = os.path.abspath(path)
    return os.path.relpath(p, ROOT) if p.startswith(ROOT + os.sep) else path


def kernel_conformance(paths=None, device: str = "/dev/kvm", platform: str = "default") -> KernelConformance:
    """Run every trace of ``paths`` (a file, a folder, a list; default: the corpus that
    tests/test_kvm.py runs, data/traces and data/emulated) on the kernel behind
    ``device`` and pair each event's kernel outcome with the model's under ``platform``."""
    from gmemlab.kvm.runner import PIN_MECHANISM, Kvm, KvmUnavailable
    from gmemlab.render.views import trace_files

    files = trace_files(list(CORPUS) if paths is None else paths)
    try:
        kvm = Kvm(device)
    except KvmUnavailable as e:
        return KernelConformance(device, False, why=str(e),
                                 runs=[KernelRun(p, trace_name(p), 0) for p in files])
    try:
        kc = KernelConformance(device, True, kernel=kvm.release, capabilities=dict(kvm.capabilities),
                               vcpu_memory_path=kvm.vcpu_memory_path, pin=PIN_MECHANISM)
        kc.runs = [_run(kvm, p, platform) for p in files]
    finally:
        kvm.close()
    return kc


def _run(kvm, path: str, platform: str) -> KernelRun:
    """One trace: judge() runs it on the kernel; the recording is walked through the model."""
    from gmemlab.errors import GmemlabError
    from gmemlab.kvm.differential import judge
    from gmemlab.kvm.runner import PAGE_SIZE
    from gmemlab.render.text import call_text
    from gmemlab.traces.format import load, loads
    from gmemlab.traces.replay import config_for
    from gmemlab.traces.walk import walk

    name = trace_name(path)
    try:
        header, events = load(path)
    except GmemlabError as e:
        return KernelRun(path, name, 0, error=str(e))
    run = KernelRun(path, name, len(events))
    if header["page_size"] != PAGE_SIZE:
        run.stopped = {"line": header.get("line", 1), "op": "header",
                       "why": f"page_size {header['page_size']} is not the running kernel's page size {PAGE_SIZE}"}
        return run
    try:
        v = judge(kvm, list(events), header)
    except GmemlabError as e:
        run.error = str(e)
        return run
    run.stopped = v.stopped
    h, recorded = loads(v.text, "<recording>")
    cfg = config_for({**h, "platform": platform})
    for ev, st in zip(events, walk(cfg, recorded)):
        run.rows.append({"line": ev["line"], "op": ev["op"], "call": call_text(st.event),
                         "kernel": dict(st.expected or {}), "model": dict(st.outcome),
                         "agree": not st.diverged})
    return run


# --- what the notebook shows ------------------------------------------------------------------

def _stop_text(run: KernelRun) -> str:
    if run.error:
        return f"not run: {run.error}"
    if run.stopped is None:
        return "ran to the end"
    s = run.stopped
    return f"line {s['line']} ({s['op']}): {s['why']}"


def _not_run_html(kc: KernelConformance) -> str:
    return (f'<div class="gml-kernel" data-ran="false" data-device="{H.esc(kc.device)}">'
            f"<p><b>No kernel here: {NOT_RUN}.</b> {H.esc(kc.why)}</p>"
            "<p>This section runs the trace corpus on the running kernel through /dev/kvm "
            "(<code>gmemlab kvm-run</code>) and sets each event's outcome beside the model's. "
            "On a machine without /dev/kvm, tests/test_kvm.py skips too (the test summary says so "
            "in red); <code>GMEMLAB_REQUIRE_KVM=1</code>, which CI sets, makes that a failure.</p></div>")


# Runs of at least this many agreeing events with the same op and the same two outcomes
# are one row (lines a-b): a guest boot's hundreds of host_writes stay readable and small.
FOLD = 4


def event_groups(rows: list, fold: int = FOLD) -> list[list]:
    """The rows in display order, consecutive alike agreeing rows grouped (a disagreeing
    row is always alone).

    >>> r = [{"op": "host_write", "kernel": {"ok": True}, "model": {"ok": True}, "agree": True}] * 5
    >>> [len(g) for g in event_groups(r + [dict(r[0], agree=False)] + r[:2])]
    [5, 1, 1, 1]
    """
    groups: list[list] = []
    for r in rows:
        g = groups[-1] if groups else None
        if g and r["agree"] and g[0]["agree"] and (r["op"], r["kernel"], r["model"]) == \
                (g[0]["op"], g[0]["kernel"], g[0]["model"]):
            g.append(r)
        else:
            groups.append([r])
    out: list[list] = []
    for g in groups:
        out += [g] if len(g) >= fold else [[r] for r in g]
    return out


def _events_html(run: KernelRun) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("line", "op (call)", "kernel", "model (default)", "agree?"))
    body = []
    for g in event_groups(run.rows):
        r = g[0]
        if len(g) == 1:
            line, call = str(r["line"]), r["call"]
        else:
            line, call = f"{r['line']}-{g[-1]['line']}", f"{r['call']} ... {g[-1]['call']} ({len(g)} events)"
        agree = (f"<td style='background:{AGREE}'>yes</td>" if r["agree"]
                 else f"<td style='background:{DISAGREE}'><b>NO</b></td>")
        body.append(f'<tr class="gml-kernel-event" data-line="{line}" data-events="{len(g)}" '
                    f'data-op="{r["op"]}" data-agree="{str(r["agree"]).lower()}">'
                    f"<td style='text-align:right'>{line}</td><td>{H.esc(call)}</td>"
                    f"<td>{H.esc(outcome_text(r['kernel']))}</td><td>{H.esc(outcome_text(r['model']))}</td>"
                    f"{agree}</tr>")
    if run.stopped:
        s = run.stopped
        body.append(f'<tr class="gml-kernel-stop" data-line="{s["line"]}"><td style="text-align:right">'
                    f"{s['line']}</td><td>{H.esc(s['op'])}</td><td colspan='3' style='font-family:sans-serif;"
                    f"font-style:italic'>the run stopped here: {H.esc(s['why'])}</td></tr>")
    return (f'<table cellpadding="2" style="border-collapse:collapse;font-size:90%;font-family:monospace;'
            f'text-align:left">'
            f'<tr style="font-family:sans-serif">{head}</tr>{"".join(body)}</table>')


def _verdict(run: KernelRun) -> str:
    if not run.supported:
        return "-"
    if run.agree:
        return "agree"
    first = run.disagreements[0]
    return f"DISAGREE ({len(run.disagreements)}; first line {first['line']})"


def kernel_conformance_html(kc: KernelConformance) -> str:
    """The section of notebook 04: kernel and capabilities, a row per trace the kernel
    ran (in whole or as a prefix) with its events folded under it, then the traces it
    could not run at all. Plain HTML and inline styles: the exported page needs nothing else."""
    if not kc.ran:
        return _not_run_html(kc)
    caps = "".join(f"<tr><td style='{_MONO}'>{H.esc(k)}</td><td style='{_MONO}'>"
                   f"{H.esc(', '.join(map(str, v)) if isinstance(v, list) else str(v))}</td></tr>"
                   for k, v in kc.capabilities.items())
    ran = kc.supported
    events = sum(len(r.rows) for r in ran)
    bad = [r for r in ran if not r.agree]
    out = [f'<div class="gml-kernel" data-ran="true" data-kernel="{H.esc(kc.kernel)}" '
           f'data-agree="{str(kc.agree).lower()}">',
           f"<p>Linux <b>{H.esc(kc.kernel)}</b>, a KVM default VM (KVM_X86_DEFAULT_VM) through "
           f"<code>{H.esc(kc.device)}</code>; the model's outcomes are those of platform <b>default</b>.</p>",
           f"<table style='border-collapse:collapse;font-size:90%'><tr><th style='{_TD}'>capability</th>"
           f"<th style='{_TD}'>value</th></tr>{caps}</table>",
           f"<p>vCPU memory path: <code>{H.esc(kc.vcpu_memory_path)}</code>: "
           f"{H.esc(VCPU_MEMORY_PATH.get(kc.vcpu_memory_path, ''))}. Pins: {H.esc(kc.pin)}.</p>",
           f"<p>{len(ran)} of {len(kc.runs)} traces ran on the kernel ({sum(r.whole for r in ran)} whole, "
           f"{len(ran) - sum(r.whole for r in ran)} as a prefix), {events} events; "
           + (f"<b>kernel and model disagree on {len(bad)} trace(s)</b>." if bad
              else "kernel and model agree on every one.") + "</p>"]
    head = "".join(f"<th style='{_TD}'>{h}</th>" for h in ("trace", "events run", "stopped at", "kernel vs model"))
    rows = []
    for r in ran:
        colour = AGREE if r.agree else DISAGREE
        rows.append(f'<tr class="gml-kernel-trace" data-trace="{H.esc(r.name)}" data-run="{len(r.rows)}" '
                    f'data-events="{r.events}" data-agree="{str(r.agree).lower()}" '
                    f'data-stopped="{r.stopped["line"] if r.stopped else ""}">'
                    f"<td style='{_MONO}'>{H.esc(r.name)}</td>"
                    f"<td style='{_TD};text-align:right'>{len(r.rows)} of {r.events}</td>"
                    f"<td style='{_TD}'>{H.esc(_stop_text(r))}</td>"
                    f"<td style='{_TD};background:{colour}'>{H.esc(_verdict(r))}</td></tr>")
    out.append(f'<table style="border-collapse:collapse;font-size:90%"><tr>{head}</tr>{"".join(rows)}</table>')
    out.append("<p>Event by event (a disagreeing trace is unfolded):</p>")
    for r in ran:
        opened = "" if r.agree else " open"
        out.append(f'<details class="gml-kernel-events" data-trace="{H.esc(r.name)}"{opened}>'
                   f"<summary><code>{H.esc(r.name)}</code>: {len(r.rows)} of {r.events} events, "
                   f"{H.esc(_verdict(r))}</summary>{_events_html(r)}</details>")
    if kc.unsupported:
        lis = "".join(f'<li class="gml-kernel-unsupported" data-trace="{H.esc(r.name)}"><code>{H.esc(r.name)}'
                      f"</code>: {H.esc(_stop_text(r))}</li>" for r in kc.unsupported)
        out.append(f"<p>Traces the kernel could not run at all (not even their first event):</p><ul>{lis}</ul>")
    out.append("</div>")
    return "".join(out)


def kernel_conformance_data(kc: KernelConformance) -> dict:
    """The JSON a notebook hands back (its results_path)."""
    if not kc.ran:
        return {"ran": False, "why": kc.why, "device": kc.device}
    return {"ran": True, "device": kc.device, "kernel": kc.kernel, "capabilities": kc.capabilities,
            "vcpu_memory_path": kc.vcpu_memory_path, "agree": kc.agree,
            "traces": {r.name: {"events": r.events, "run": len(r.rows), "stopped": r.stopped,
                                "disagreements": [d["line"] for d in r.disagreements]} for r in kc.supported},
            "not_run": {r.name: _stop_text(r) for r in kc.unsupported}}


def kernel_conformance_summary(kc: KernelConformance) -> str:
    """One or two lines of plain text."""
    from gmemlab.render.text import wrap
    if not kc.ran:
        return wrap(f"{NOT_RUN}: {kc.why}", "")
    ran = kc.supported
    bad = [r.name for r in ran if not r.agree]
    text = (f"On Linux {kc.kernel} (KVM default VM, vCPU memory path {kc.vcpu_memory_path}): "
            f"{len(ran)} of {len(kc.runs)} traces ran ({sum(r.whole for r in ran)} whole), "
            f"{sum(len(r.rows) for r in ran)} events; "
            + (f"kernel and model (platform default) disagree on {', '.join(bad)}." if bad
               else "kernel and model (platform default) agree on every event."))
    return wrap(text, "")
