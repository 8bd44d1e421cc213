"""`gmemlab emulate`: traces made by driving the model through a scenario.

A scenario is the VMM's and the guest's side of a run, written as a generator: it yields
one event at a time and gets back the outcome the model predicts, so it can react as a
VMM would (resume a populate that stopped, unpin and retry after EAGAIN, accept a page
the guest faulted on). Every event goes through the range engine
(gmemlab.traces.ranges), and its "expect" is that outcome: an emulated trace conforms to
the proposal it was made under, by construction, and says what the other proposals
would have to match. Randomness comes from random.Random(seed) only, so the same
arguments give the same bytes.

Scenarios (platforms where they make sense):
- snp-launch (snp), tdx-launch (tdx): create with INIT_SHARED|MMAP, host_write the image,
  then the proposal's own launch sequence (private-first: convert, then populate;
  populate-converts: populate the shared pages; userspace-converts: populate, then
  convert), finalize, the guest reads the image.
- legacy-copy (snp, tdx): populate from a separate source buffer (src "buffer"), as VMMs
  did before in-place conversion.
- cca-launch (cca): the copy-aside flow. KVM_ARM_RMI_POPULATE requires a source
  (kvm_arm_rmi_populate refuses source_uaddr 0), so the VMM loads the image through mmap
  while shared, keeps a copy of it aside, runs the proposal's launch sequence with every
  populate reading from the copy (one call per run of equal bytes), activates the Realm
  (finalize: its first KVM_RUN), and the guest reads the image.
- pinned-retry (snp, tdx): an image page is pinned; the conversion (private-first,
  userspace-converts) or the populate (populate-converts) fails on it (EAGAIN, or EIO
  from SNP's LAUNCH_UPDATE), userspace unpins and retries.
- guest-boot (snp, tdx, sw_protected): a Linux-like boot of a large guest: launch of a
  small firmware image, finalize, then the guest's lazy acceptance of 2 MiB chunks,
  KVM_HC_MAP_GPA_RANGE conversions of 4 KiB pages and 2 MiB chunks answered by
  set_attributes, guest_accept after conversions to private, guest and device (host)
  accesses, vhost pins, implicit conversions after KVM_EXIT_MEMORY_FAULT and discards.

>>> header, events = emulate("snp-launch", pages=4, seed=1)
>>> header["description"].split(";")[0]
'snp-launch: SNP launch with the image loaded in place'
>>> [(e["op"], e["expect"]) for e in events][3:6]
[('set_attributes', {'ret': 0}), ('populate', {'ret': 0, 'done': 2}), ('finalize', {'ret': 0})]
"""

from __future__ import annotations

import random
from typing import Callable, Generator, Iterator

from gmemlab.errors import UsageError
from gmemlab.model.events import Event, event
from gmemlab.model.state import Config
from gmemlab.model.vocab import PLATFORMS, PROPOSALS, SERIES
from gmemlab.traces.format import dumps_line, event_json, header_json
from gmemlab.traces.ranges import RangeEngine

PS = 4096
CHUNK = (2 << 20) // PS  # pages in 2 MiB
LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
GUEST_VALUES = b"abcdefghijklmnopqrstuvwxyz0123456789"

Scenario = Generator[Event, dict, None]

# scenario -> (platforms where it makes sense, default platform, what it is)
SCENARIOS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "snp-launch": (("snp",), "snp", "SNP launch with the image loaded in place"),
    "tdx-launch": (("tdx",), "tdx", "TDX launch with the image loaded in place"),
    "legacy-copy": (("snp", "tdx"), "snp", "launch through the legacy path: populate copies a separate source buffer"),
    "cca-launch": (("cca",), "cca",
                   "CCA launch by the copy-aside flow: load through mmap, keep a copy, populate from the copy"),
    "pinned-retry": (("snp", "tdx"), "snp",
                     "launch with a pinned image page: the call that meets it fails, userspace unpins and retries"),
    "guest-boot": (("snp", "tdx", "sw_protected"), "snp",
                   "a Linux-like boot: firmware launch, finalize, lazy accept of 2 MiB chunks, "
                   "KVM_HC_MAP_GPA_RANGE conversions of 4 KiB and 2 MiB answered by set_attributes, "
                   "guest and device accesses"),
}
DEFAULT_PAGES = {"guest-boot": 1 << 24}  # 64 GiB; the launch scenarios default to 16 pages
# The largest --pages: the launch scenarios write O(pages) events (1M pages = 4 GiB: about
# 500,000 events in ~10 s); guest-boot writes --events events whatever the size.
MAX_LAUNCH_PAGES = 1 << 20
MAX_PAGES = {"guest-boot": 1 << 40}
DEFAULT_EVENTS = 1_000_000               # guest-boot only


def known_text() -> str:
    return ", ".join(f"{name} ({'/'.join(p[0])})" for name, p in SCENARIOS.items())


def check_args(scenario: str, proposal: str, platform: str | None, series: str,
               pages: int | None, events: int | None) -> tuple[str, int, int | None]:
    """Validate the arguments; return (platform, pages, events) with defaults filled in."""
    if scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario {scenario!r}; known scenarios (platforms): {known_text()}")
    platforms, default_platform, _ = SCENARIOS[scenario]
    platform = platform or default_platform
    from gmemlab.model.vocab import proposal_names  # the built-ins and registered variants
    for name, value, known in (("proposal", proposal, proposal_names()), ("platform", platform, PLATFORMS),
                               ("series", series, SERIES)):
        if value not in known:
            raise UsageError(f"unknown {name} {value!r}; known: {', '.join(known)}")
    if platform not in platforms:
        why = ("sw_protected has no launch ioctls" if platform == "sw_protected"
               else f"it is the launch of {', '.join(platforms)}")
        raise UsageError(f"scenario {scenario!r} makes no sense on {platform} ({why}); "
                         f"known scenarios (platforms): {known_text()}")
    pages = DEFAULT_PAGES.get(scenario, 16) if pages is None else pages
    if scenario == "guest-boot":
        if pages < 2 * CHUNK:
            raise UsageError(f"guest-boot needs --pages >= {2 * CHUNK} (two 2 MiB chunks), got {pages}")
        events = DEFAULT_EVENTS if events is None else events
        if events < 1:
            raise UsageError(f"--events must be >= 1, got {events}")
    else:
        if events is not None:
            raise UsageError("--events applies to guest-boot only")
        if pages < 1:
            raise UsageError(f"--pages must be >= 1, got {pages}")
    limit = MAX_PAGES.get(scenario, MAX_LAUNCH_PAGES)
    if pages > limit:
        raise UsageError(f"--pages must be <= {limit:,} for {scenario} (its events grow with the pages: "
                         f"{MAX_LAUNCH_PAGES:,} pages take ~10 s), got {pages:,}")
    return platform, pages, events


def emulate(scenario: str, proposal: str = "private-first", platform: str | None = None,
            series: str = "v8", pages: int | None = None, seed: int = 0,
            events: int | None = None) -> tuple[dict, Iterator[Event]]:
    """(header, events): the events are made lazily, each with "expect" filled in."""
    platform, pages, events = check_args(scenario, proposal, platform, series, pages, events)
    cfg = Config(proposal=proposal, platform=platform, series=series, page_size=PS)
    rng = random.Random(seed)
    engine = RangeEngine(cfg)
    params = f"proposal {proposal}, platform {platform}, series {series}, pages {pages}, seed {seed}"
    if events is not None:
        params += f", events {events}"
    header = {"format": "gmemlab-trace/1", "platform": platform, "series": series, "page_size": PS,
              "source": "emulated",
              "description": f"{scenario}: {SCENARIOS[scenario][2]}; emulated by gmemlab ({params})"}
    make: Callable[..., Scenario] = _BUILDERS[scenario]
    return header, _drive(engine, make(cfg, pages, rng, engine), events)


def emulate_lines(*args, **kwargs) -> Iterator[str]:
    """The trace as text lines (each ending in a newline), header first, made lazily."""
    header, events = emulate(*args, **kwargs)
    yield dumps_line(header_json(header)) + "\n"
    for ev in events:
        yield dumps_line(event_json(ev)) + "\n"


def _note(text: str | None) -> dict:
    """The "note" field of an event, when there is a note."""
    return {"note": text} if text else {}


def _drive(engine: RangeEngine, scenario: Scenario, limit: int | None) -> Iterator[Event]:
    count = 0
    try:
        ev = next(scenario)
        while True:
            outcome = engine.apply(ev)[0]
            yield ev.replace(expect=dict(outcome))
            count += 1
            if limit is not None and count >= limit:
                return
            ev = scenario.send(outcome)
    except StopIteration:
        return
    finally:
        scenario.close()


# --- the VMM's launch -------------------------------------------------------------------

def _image(rng: random.Random, n: int) -> list[int]:
    return [rng.choice(LETTERS) for _ in range(n)]


def _populate(first: int, n: int, src_value: int | None = None, note: str | None = None):
    """One populate call over pages [first, first + n); after partial progress, resume
    as userspace does with the advanced gfn/len (SNP) or gpa/nr_pages (TDX). Returns the
    page a call could not get past (None when every page is done)."""
    source = {} if src_value is None else {"src": "buffer", "value": src_value}
    while n:
        out = yield event("populate", offset=first * PS, size=n * PS, **source, **_note(note))
        note = None
        done = out.get("done", 0)
        first, n = first + done, n - done
        if n and not done:
            return first
    return None


def _convert(first: int, n: int, attributes: str, pinned: list[int], note: str | None = None,
             look: bool = True):
    """set_attributes over pages [first, first + n); on EAGAIN, wait for the reference at
    error_offset to go (unpin) and retry. Returns the last outcome."""
    while True:
        out = yield event("set_attributes", offset=first * PS, size=n * PS, attributes=attributes, **_note(note))
        note = None
        if out.get("ret") != "EAGAIN" or "error_offset" not in out:
            return out
        page = out["error_offset"] // PS
        if look:
            yield event("host_read", offset=first * PS,
                        note="the failed conversion changed no attribute: the page refaults, shared")
        yield event("unpin", offset=page * PS, size=PS,
                    note="the reference at error_offset goes away (vhost, IOMMU); userspace retries")
        if page in pinned:
            pinned.remove(page)


def _launch(cfg: Config, pages: int, rng: random.Random, *, legacy: bool = False, pin: bool = False,
            copy_aside: bool = False) -> Scenario:
    n = max(1, min(pages, max(2, pages // 4)))
    from_copy = legacy or copy_aside  # every populate reads a source buffer
    image = _image(rng, n)
    proposal = cfg.proposal
    pinned: list[int] = []
    fresh_private = legacy and proposal == "private-first"
    yield event("create_gmem", size=pages * PS,
                flags=() if fresh_private else ("MMAP", "INIT_SHARED"),
                note="legacy VMM: no MMAP, no INIT_SHARED, every index starts private" if fresh_private
                else "INIT_SHARED so that the image can be loaded in place")
    if not legacy:
        for i, v in enumerate(image):
            yield event("host_write", offset=i * PS, value=v,
                        **_note("userspace loads the image through mmap while shared" if i == 0 else None))
    if copy_aside:
        for i in range(n):
            yield event("host_read", offset=i * PS, **_note(
                "the VMM copies the image aside (KVM_ARM_RMI_POPULATE needs a source)" if i == 0 else None))
    if pin:
        p = rng.randrange(1, n) if n > 1 else 0
        pinned.append(p)
        yield event("pin", offset=p * PS, size=PS,
                    note=f"something holds a reference on image page {p} (vhost, vmsplice, IOMMU)")

    def populate_image(start, note):
        """Populate image pages [start, n): in place, or from the source buffer one call
        per run of equal bytes (the legacy path). Returns the page it got stuck at."""
        i = start
        while i < n:
            j = i + 1
            while from_copy and j < n and image[j] == image[i]:
                j += 1
            if not from_copy:
                j = n
            stuck = yield from _populate(i, j - i, image[i] if from_copy else None, note)
            note = None
            if stuck is not None:
                return stuck
            i = j
        return None

    def populate_with_retry(note):
        stuck = yield from populate_image(0, note)
        if stuck is not None and pinned:
            yield event("host_read", offset=stuck * PS,
                        note="the page populate stopped at is still shared and keeps the image")
            for p in list(pinned):
                yield event("unpin", offset=p * PS, size=PS)
                pinned.remove(p)
            yield from populate_image(stuck, "resume after unpin")

    if proposal == "private-first":
        if not fresh_private:
            yield from _convert(0, n, "private", pinned,
                                "KVM_SET_MEMORY_ATTRIBUTES2 to private: unmap from the host, refcount check")
        yield from populate_with_retry("populate from the copy into KVM-private pages" if copy_aside
                                       else "populate in place on KVM-private pages"
                                       if not legacy else "populate from a separate source buffer")
    elif proposal == "populate-converts":
        yield from populate_with_retry("populate on KVM-shared pages; it converts them itself")
    else:
        yield from populate_with_retry("populate on KVM-shared pages, no conversion")
        yield from _convert(0, n, "private", pinned, "userspace converts shared->private afterwards")
    yield event("finalize")
    for i in range(n):
        yield event("guest_read", offset=i * PS, private=True,
                    **_note("launch-populated pages come validated: the guest reads the image" if i == 0 else None))
    if pages > n and not fresh_private:
        yield event("guest_read", offset=n * PS, private=False, note="a page outside the image, still shared")


def _plain_launch(cfg, pages, rng, engine):
    return _launch(cfg, pages, rng)


def _legacy_copy(cfg, pages, rng, engine):
    return _launch(cfg, pages, rng, legacy=True)


def _pinned_retry(cfg, pages, rng, engine):
    return _launch(cfg, pages, rng, pin=True)


def _cca_launch(cfg, pages, rng, engine):
    return _launch(cfg, pages, rng, copy_aside=True)


# --- guest-boot ---------------------------------------------------------------------------

def _guest_boot(cfg: Config, pages: int, rng: random.Random, engine: RangeEngine) -> Scenario:
    has_te = cfg.has_te
    fw = max(1, min(256, pages // 8))
    nchunks = pages // CHUNK
    ram = pages * PS
    image: list[int] = []
    while len(image) < fw:
        image += [rng.choice(LETTERS)] * 16
    image = image[:fw]
    pinned: list[int] = []

    # The VMM: one guest_memfd for all RAM, the firmware loaded in place, the launch.
    yield event("create_gmem", size=ram, flags=("MMAP", "INIT_SHARED"),
                note="guest RAM in one guest_memfd, shared at creation so that the firmware loads in place")
    for i, v in enumerate(image):
        yield event("host_write", offset=i * PS, value=v,
                    **_note("the VMM loads the firmware image through mmap" if i == 0 else None))
    if not has_te:
        yield from _convert(0, pages, "private", pinned, "sw_protected: all RAM private; no launch ioctls")
    elif cfg.proposal == "private-first":
        yield from _convert(0, pages, "private", pinned, "all RAM private, the firmware included")
        yield from _populate(0, fw, None, "the firmware, populated in place")
    elif cfg.proposal == "populate-converts":
        yield from _populate(0, fw, None, "the firmware, populated from shared (populate converts it)")
        yield from _convert(fw, pages - fw, "private", pinned, "the rest of RAM private")
    else:
        yield from _populate(0, fw, None, "the firmware, populated while KVM-shared")
        yield from _convert(0, pages, "private", pinned, "all RAM private, the firmware included")
    if has_te:
        yield event("finalize")

    # The guest. Its own bookkeeping: which 2 MiB chunks it accepted, which 4 KiB pages
    # and 2 MiB chunks it shared; each access uses the view the page's attribute calls for.
    accepted: list[int] = []
    shared_pages: list[int] = []
    shared_chunks: list[int] = []
    hot: list[int] = []
    next_chunk = 1
    fill = [0, 0, GUEST_VALUES[0]]  # chunk index into accepted, page in chunk, value

    def page_range(chunk):
        return max(chunk * CHUNK, fw), (chunk + 1) * CHUNK

    def access(i, write, value=None, private=None, note=None):
        """A guest access with the view the guest believes in; an exception on a page not
        yet accepted makes the guest accept it and retry."""
        view = engine.page(i).private if private is None else private
        ev = event("guest_write" if write else "guest_read", offset=i * PS, private=view,
                   **({"value": value} if write else {}), **_note(note))
        out = yield ev
        if "exception" in out:
            yield event("guest_accept", offset=i * PS, size=PS,
                        note=f"{out['exception']}: the page is not accepted yet; accept and retry")
            out = yield ev.without("note")
        return out

    def accept(first, n, note=None):
        return (yield event("guest_accept", offset=first * PS, size=n * PS, **_note(note)))

    noted: set[str] = set()

    def once(key, text):
        """A note the first time something happens, not on every repetition."""
        if key in noted:
            return {}
        noted.add(key)
        return {"note": text}

    def to_shared(first, n, what):
        yield event("map_gpa_range", offset=first * PS, size=n * PS, private=False,
                    **once(f"shared{n}", f"the guest shares {what}; the VMM answers with set_attributes"))
        return (yield from _convert(first, n, "shared", pinned, look=False))

    def to_private(first, n):
        yield event("map_gpa_range", offset=first * PS, size=n * PS, private=True,
                    **once(f"private{n}", "the guest takes memory back: map_gpa_range, set_attributes, then accept"))
        out = yield from _convert(first, n, "private", pinned, look=False)
        yield from accept(first, n)
        return out

    lo, hi = page_range(0)
    if hi > lo:
        yield from accept(lo, hi - lo, "the firmware accepts the rest of the first 2 MiB")
    accepted.append(0)
    hot.extend(range(lo, min(hi, lo + 64)))

    actions = [("write_hot", 20), ("read_hot", 20), ("fill", 12), ("accept", 6), ("share4k", 6),
               ("share2m", 2), ("io", 12), ("unshare", 7), ("pin", 2), ("unpin", 2),
               ("implicit", 2), ("discard", 1)]
    names = [a for a, _ in actions]
    weights = [w for _, w in actions]
    while True:
        action = rng.choices(names, weights)[0]
        if action == "accept" or (action == "fill" and len(accepted) < 2):
            if next_chunk >= nchunks:
                action = "write_hot"
            else:
                c = next_chunk
                next_chunk += 1
                yield from accept(c * CHUNK, CHUNK, once("accept", "lazy accept of the next 2 MiB chunk").get("note"))
                accepted.append(c)
                if len(hot) < 4096:
                    hot.extend(rng.sample(range(c * CHUNK, (c + 1) * CHUNK), 16))
                continue
        if action == "write_hot":
            yield from access(rng.choice(hot), True, rng.choice(GUEST_VALUES))
        elif action == "read_hot":
            yield from access(rng.choice(hot), False)
        elif action == "fill":
            # The kernel initializing memory: consecutive pages of one chunk, one value.
            if fill[0] >= len(accepted) or rng.random() < 0.02:
                fill[0] = rng.randrange(len(accepted))
                fill[1] = 0
            chunk = accepted[fill[0]]
            lo, hi = page_range(chunk)
            for _ in range(rng.randint(1, 8)):
                i = lo + fill[1]
                if i >= hi:
                    fill[0], fill[1] = rng.randrange(len(accepted)), 0
                    break
                if fill[1] % 64 == 0:
                    fill[2] = rng.choice(GUEST_VALUES)
                fill[1] += 1
                yield from access(i, True, fill[2])
        elif action == "share4k":
            chunk = rng.choice(accepted)
            lo, hi = page_range(chunk)
            if hi <= lo:
                continue
            i = rng.randrange(lo, hi)
            if not engine.page(i).private:
                continue
            yield from to_shared(i, 1, "a 4 KiB page (GHCB, kvmclock, a virtio ring)")
            shared_pages.append(i)
            yield event("host_write", offset=i * PS, value=rng.choice(GUEST_VALUES))
            yield from access(i, False, private=False)
        elif action == "share2m":
            if len(accepted) < 3:
                continue
            k = rng.randrange(1, len(accepted))
            chunk = accepted.pop(k)
            yield from to_shared(chunk * CHUNK, CHUNK, "a 2 MiB chunk (SWIOTLB bounce buffers)")
            shared_chunks.append(chunk)
        elif action == "io":
            i = _shared_target(rng, shared_pages, shared_chunks)
            if i is None or engine.page(i).private:
                continue
            v = rng.choice(GUEST_VALUES)
            if rng.random() < 0.5:
                yield event("host_write", offset=i * PS, value=v)   # device to guest (DMA in)
                yield from access(i, False, private=False)
            else:
                yield from access(i, True, v, private=False)                 # guest to device
                yield event("host_read", offset=i * PS)
        elif action == "unshare":
            if shared_pages and (not shared_chunks or rng.random() < 0.7):
                i = shared_pages.pop(rng.randrange(len(shared_pages)))
                if engine.page(i).private:
                    continue
                yield from to_private(i, 1)
            elif shared_chunks:
                chunk = shared_chunks.pop(rng.randrange(len(shared_chunks)))
                yield from to_private(chunk * CHUNK, CHUNK)
                accepted.append(chunk)
        elif action == "pin":
            i = _shared_target(rng, shared_pages, shared_chunks)
            if i is None or i in pinned or engine.page(i).private:
                continue
            out = yield event("pin", offset=i * PS, size=PS, **once("pin", "vhost pins a shared page for I/O"))
            if out.get("ret") == 0:
                pinned.append(i)
        elif action == "unpin":
            if pinned:
                i = pinned.pop(rng.randrange(len(pinned)))
                yield event("unpin", offset=i * PS, size=PS)
        elif action == "implicit":
            # The guest touches a page with the other view: KVM_EXIT_MEMORY_FAULT, and the
            # VMM converts the page to what the access asked for (QEMU kvm_convert_memory).
            i = rng.choice(hot)
            private = not engine.page(i).private
            out = yield from access(i, False, private=private, note=once(
                "implicit", "the guest uses the other view: KVM_EXIT_MEMORY_FAULT, the VMM converts").get("note"))
            if out.get("exit") == "MEMORY_FAULT":
                out = yield from _convert(i, 1, "private" if private else "shared", pinned, look=False)
                if out.get("ret") == 0:
                    yield from access(i, False, private=private)
                    if not private:
                        shared_pages.append(i)
                    elif i in shared_pages:
                        shared_pages.remove(i)
        elif action == "discard":
            if shared_chunks:
                chunk = rng.choice(shared_chunks)
                yield event("punch_hole", offset=chunk * CHUNK * PS, size=CHUNK * PS,
                            **once("discard", "the VMM discards a shared 2 MiB chunk (free page reporting)"))


def _shared_target(rng: random.Random, shared_pages: list[int], shared_chunks: list[int]) -> int | None:
    if shared_chunks and (not shared_pages or rng.random() < 0.5):
        return rng.choice(shared_chunks) * CHUNK + rng.randrange(CHUNK)
    if shared_pages:
        return rng.choice(shared_pages)
    return None


_BUILDERS: dict[str, Callable[..., Scenario]] = {
    "snp-launch": _plain_launch,
    "tdx-launch": _plain_launch,
    "legacy-copy": _legacy_copy,
    "cca-launch": _cca_launch,
    "pinned-retry": _pinned_retry,
    "guest-boot": _guest_boot,
}


# --- the corpus in data/emulated -----------------------------------------------------------

CORPUS_BOOT = {"pages": 8192, "events": 2000}  # 32 MiB: past replay.RANGE_PAGES (64), so on runs


def corpus() -> list[tuple[str, str, str, str, dict]]:
    """(file name, scenario, proposal, platform, options) of every emulated corpus file:
    every scenario on every platform where it makes sense, under every proposal (once on
    sw_protected, where no proposal differs: there is no populate)."""
    out = []
    for scenario, (platforms, _, _) in SCENARIOS.items():
        for platform in platforms:
            for proposal in PROPOSALS if platform != "sw_protected" else PROPOSALS[:1]:
                name = "_".join(x.replace("-", "_") for x in (platform, scenario, proposal)) + ".jsonl"
                opts = dict(CORPUS_BOOT) if scenario == "guest-boot" else {}
                out.append((name, scenario, proposal, platform, opts))
    return out


def corpus_command(name: str, scenario: str, proposal: str, platform: str, opts: dict, folder: str) -> str:
    extra = "".join(f" --{k} {v}" for k, v in opts.items())
    return (f"gmemlab emulate {scenario} --proposal {proposal} --platform {platform}{extra} "
            f"-o {folder}/{name}")


def verdict(report) -> dict:
    """A replay's verdict as data/emulated/manifest.json records it."""
    names = list(dict.fromkeys(v["invariant"] for v in report.violations))
    if report.divergence is not None:
        return {"verdict": "diverges", "line": report.divergence["line"], "invariants": names}
    return {"verdict": "violates" if names else "conforms", "invariants": names}


def build_corpus(folder: str = "data/emulated") -> dict:
    """Write every corpus file and manifest.json into folder; return the manifest."""
    import json
    import os

    from gmemlab.fsutil import atomic_write
    from gmemlab.traces.format import loads
    from gmemlab.traces.replay import config_for, replay

    manifest = {}
    for name, scenario, proposal, platform, opts in corpus():
        text = "".join(emulate_lines(scenario, proposal, platform, **opts))
        atomic_write(os.path.join(folder, name), text)
        header, events = loads(text, name)
        manifest[name] = {"command": corpus_command(name, scenario, proposal, platform, opts, folder),
                          "verdicts": {p: verdict(replay(config_for(header, p), events, name)) for p in PROPOSALS}}
    atomic_write(os.path.join(folder, "manifest.json"), json.dumps(manifest, indent=1) + "\n")
    return manifest


if __name__ == "__main__":
    import sys
    m = build_corpus(sys.argv[1] if len(sys.argv) > 1 else "data/emulated")
    print(f"{len(m)} traces and manifest.json written")
