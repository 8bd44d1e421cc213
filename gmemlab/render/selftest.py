"""A trace as a C selftest: ``gmemlab selftest TRACE [-o FILE.c]`` (docs/cli.md).

The trace (a counterexample of ``gmemlab explore``, or any gmemlab-trace/1 file whose
events all carry "expect") becomes one C program in the style of the series'
tools/testing/selftests/kvm/x86/guest_memfd_conversions_test.c: the same calls in the
same order, each outcome asserted. The program is standalone: its assertion macros are
its own (the kselftest harness is not needed), and the uAPI it needs beyond the
installed <linux/kvm.h> comes from gmemlab/render/c/gmemlab_uapi.h, copied into the
file (guarded by #ifndef, so newer installed headers win). It builds with
``gcc -Wall -Werror -o t t.c``; it exits 0 when every outcome matches, 1 at the first
that does not (naming the trace line), and 4 (KSFT_SKIP) when the machine lacks
/dev/kvm, the VM type (SNP and TDX included; a CCA Realm off arm64, or where
KVM_CREATE_VM refuses KVM_VM_TYPE_ARM_REALM), /dev/sev, KVM_SET_MEMORY_ATTRIBUTES2 or
the hypercall exit.

What each op becomes:

- create_gmem: KVM_CREATE_GUEST_MEMFD, then KVM_SET_USER_MEMORY_REGION2 binds it to
  memslot 0 at gpa 0 (the trace format's meaning), replacing an older file.
- set_attributes: KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd; error_offset checked.
- host_read / host_write: a one-page MAP_SHARED mmap of the file; SIGBUS is caught
  with sigsetjmp/siglongjmp. A write fills the page, a read checks the byte. An access
  of another "process" than the VMM runs in a forked child.
- punch_hole: fallocate(PUNCH_HOLE | KEEP_SIZE).
- pin / unpin: a long-term pin without debugfs, as gmemlab kvm-run takes it: each page
  is registered as an io_uring fixed buffer (FOLL_LONGTERM), one ring per page.
- populate / finalize (snp, tdx): the launch ioctls. SNP: KVM_SEV_INIT2 and
  KVM_SEV_SNP_LAUNCH_START at set-up, KVM_SEV_SNP_LAUNCH_UPDATE (uaddr 0 for src null,
  else a buffer holding "value"), KVM_SEV_SNP_LAUNCH_FINISH. TDX: KVM_TDX_CAPABILITIES,
  KVM_TDX_INIT_VM, a vCPU and KVM_TDX_INIT_VCPU at set-up, KVM_TDX_INIT_MEM_REGION on
  the vCPU (source_addr 0 for src null), KVM_TDX_FINALIZE_VM. The errno is asserted,
  and with "done" the range the kernel writes back (gfn_start/len, gpa/nr_pages).
- populate (cca): KVM_ARM_RMI_POPULATE on a KVM_VM_TYPE_ARM_REALM VM (Steven Price's
  KVM CCA series, api.rst), measured (KVM_ARM_RMI_POPULATE_FLAGS_MEASURE), from a
  buffer holding "value" (source_uaddr 0 for src null: the model's EINVAL); no set-up
  call (the Realm descriptor is created at the first populate). The errno is asserted,
  and with "done" the base, size and source_uaddr the kernel writes back. The program
  skips (exit 4) when it was not built for arm64 (#ifndef __aarch64__) and when
  KVM_CREATE_VM refuses the Realm type (EINVAL: no RMM); it has never run on arm64.
- guest_read / guest_write (sw_protected, default): a vCPU runs a few bytes of real-mode
  code from its own memslot one page below 4 GiB, as gmemlab/kvm/runner.py does:
  ``mov al, [bx]; hlt`` or ``rep stosb; hlt`` with the data segments based at the page.
  HLT is {"ok"} (the read's byte is the guest's AL), KVM_EXIT_MEMORY_FAULT and
  KVM_EXIT_MMIO are {"exit"}. On these VM types the guest has no C-bit or shared bit:
  the kernel takes the view from the page's attribute, so "private" is not a choice of
  the program (and a private access on a default VM is refused).
- map_gpa_range (sw_protected, default): the guest issues KVM_HC_MAP_GPA_RANGE with
  VMCALL; KVM_CAP_EXIT_HYPERCALL brings it to userspace, which answers with
  KVM_SET_MEMORY_ATTRIBUTES2 as a VMM would; the guest's RAX is the asserted "ret".

Not expressed (an InputError naming the line, exit 2): guest_accept (PVALIDATE /
TDG.MEM.PAGE.ACCEPT need a guest program inside the measured image of a launched SNP or
TDX guest, reporting through the GHCB or a TDVMCALL), and guest accesses or
map_gpa_range on snp/tdx (the same reason: the host cannot set a protected vCPU's
registers nor read them back); populate and finalize on sw_protected/default (no launch
ioctls there); on cca, finalize (the Realm's activation at its first KVM_RUN,
assumption A-cca-activate: it needs a REC, an in-kernel VGIC and a guest image) and
the guest ops (a guest program in the Realm); an event without "expect". No
counterexample of the explore manifest
(data/manifest/explore.json) holds any of them: tests/test_selftest_manifest.py checks.

>>> h = {"format": "gmemlab-trace/1", "platform": "sw_protected", "series": "v8", "page_size": 4096}
>>> from gmemlab.model.events import event
>>> c = render(h, [event("create_gmem", size=4096, flags=("MMAP",), expect={"ret": 0}, line=2)], "t.jsonl")
>>> "KVM_CREATE_GUEST_MEMFD" in c and "create_gmem(0x1000ULL, GUEST_MEMFD_FLAG_MMAP)" in c
True
"""

from __future__ import annotations

import errno as _errno
import os
import re
from pathlib import Path
from typing import Iterable

from gmemlab.errors import InputError

UAPI_HEADER = Path(__file__).parent / "c" / "gmemlab_uapi.h"
PLATFORM_VM_TYPES = {"sw_protected": "KVM_X86_SW_PROTECTED_VM", "default": "KVM_X86_DEFAULT_VM",
                     "snp": "KVM_X86_SNP_VM", "tdx": "KVM_X86_TDX_VM", "cca": "KVM_VM_TYPE_ARM_REALM"}
CVM_PLATFORMS = ("snp", "tdx", "cca")
LAUNCH_SETUP = ("snp", "tdx")   # a launch context set up before any launch command (cca: none)
VM_CHOICES = ("platform", "sw_protected", "default")
GMEM_FLAG_C = {"MMAP": "GUEST_MEMFD_FLAG_MMAP", "INIT_SHARED": "GUEST_MEMFD_FLAG_INIT_SHARED",
               "NO_DIRECT_MAP": "GUEST_MEMFD_FLAG_NO_DIRECT_MAP"}
ATTR_FLAG_C = {"ZERO": "KVM_SET_MEMORY_ATTRIBUTES2_ZERO", "PRESERVE": "KVM_SET_MEMORY_ATTRIBUTES2_PRESERVE"}
# Ops that are no userspace call on sw_protected or default, and why.
NOT_USERSPACE = {
    "populate": "populate is a launch ioctl of SNP/TDX (KVM_SEV_SNP_LAUNCH_UPDATE, KVM_TDX_INIT_MEM_REGION)",
    "finalize": "finalize is a launch ioctl of SNP/TDX (KVM_SEV_SNP_LAUNCH_FINISH, KVM_TDX_FINALIZE_VM)",
    "guest_accept": "guest_accept is PVALIDATE / TDG.MEM.PAGE.ACCEPT of a trusted entity",
}
# Ops that need the vCPU to run guest code: expressed on sw_protected and default; on SNP and
# TDX not (the host neither sets nor reads a protected vCPU's registers), and why.
GUEST_OPS = ("guest_read", "guest_write", "map_gpa_range")
NOT_ON_CVM = {
    "guest_read": "a guest access on an SNP/TDX VM needs a guest program in the measured launch image "
                  "that reports through the GHCB or a TDVMCALL (the host cannot set or read a protected "
                  "vCPU's registers)",
    "guest_write": "a guest access on an SNP/TDX VM needs a guest program in the measured launch image "
                   "that reports through the GHCB or a TDVMCALL (the host cannot set or read a protected "
                   "vCPU's registers)",
    "map_gpa_range": "the hypercall of an SNP/TDX guest comes through the GHCB or a TDVMCALL from a guest "
                     "program in the measured launch image",
    "guest_accept": "PVALIDATE / TDG.MEM.PAGE.ACCEPT run in a launched SNP/TDX guest: a guest program in "
                    "the measured image would have to report through the GHCB or a TDVMCALL",
}
# The same ops in a CCA Realm, and finalize, which on cca is no ioctl (and why).
_IN_REALM = ("needs a guest program in the Realm's measured image, run in a REC that the host can neither "
             "set nor read (the RMM lets KVM set only the GPRs and PC before activation)")
NOT_ON_CCA = {
    "guest_read": "a guest access in a Realm " + _IN_REALM,
    "guest_write": "a guest access in a Realm " + _IN_REALM,
    "map_gpa_range": "a Realm's RIPAS change (RSI_IPA_STATE_SET, a REC exit) " + _IN_REALM,
    "guest_accept": "a Realm has nothing to accept; a RIPAS change " + _IN_REALM,
    "finalize": "finalize on cca stands for the Realm's activation at its first KVM_RUN (kvm_activate_realm, "
                "assumption A-cca-activate), which needs a REC, an in-kernel VGIC and a guest image in the Realm",
}
# The outcomes a vCPU exit stands for (kvm.h: KVM_EXIT_*).
EXIT_C = {"MEMORY_FAULT": "KVM_EXIT_MEMORY_FAULT", "MMIO": "KVM_EXIT_MMIO", "IO": "KVM_EXIT_IO",
          "SHUTDOWN": "KVM_EXIT_SHUTDOWN", "INTERNAL_ERROR": "KVM_EXIT_INTERNAL_ERROR"}
MAX_PIN_PAGES = 4096
GUEST_CODE_GPA = 0xFFFFF000   # the guest program's page (gmemlab/kvm/runner.py: CODE_GPA)


def _errno_ok(name: str) -> bool:
    return name == "EOPNOTSUPP" or hasattr(_errno, name)


def _u64(v: int) -> str:
    return f"{v:#x}ULL"


def _comment(text: str) -> str:
    """Text safe inside a C block comment (ASCII, no comment end)."""
    text = text.encode("ascii", "replace").decode("ascii")
    return text.replace("*/", "* /").replace("/*", "/ *")


def _wrap(text: str, width: int = 72, prefix: str = " * ") -> list[str]:
    out, line = [], ""
    for word in _comment(text).split():
        if line and len(prefix) + len(line) + 1 + len(word) > width:
            out.append(prefix + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        out.append(prefix + line)
    return out


def _block_comment(text: str) -> list[str]:
    """One tab-indented C comment, wrapped."""
    lines = _wrap(text, width=80, prefix="\t * ")
    lines[0] = "\t/* " + lines[0][4:]
    if len(lines) == 1:
        return [lines[0] + " */"]
    return lines + ["\t */"]


def c_test_name(path: str) -> str:
    """A C identifier from the trace's file name.

    >>> c_test_name("data/traces/selftests/fault-private.jsonl")
    'fault_private'
    """
    stem = os.path.basename(str(path))
    for ext in (".jsonl", ".json", ".trace"):
        if stem.endswith(ext):
            stem = stem[:-len(ext)]
    name = re.sub(r"[^A-Za-z0-9_]", "_", stem).strip("_") or "trace"
    return name if not name[0].isdigit() else "t_" + name


def _flags(names: Iterable[str], table: dict, path: str, line: int) -> str:
    parts = []
    for n in names:
        if n not in table:
            raise InputError(path, line, f"flag {n!r} has no C name")
        parts.append(table[n])
    return " | ".join(parts) or "0"


def _want_ret(ev, path: str, line: int) -> str:
    """The C value a call's helper returns for the expected "ret": 0 or -ERRNO."""
    ret = ev["expect"].get("ret")
    if ret is None:
        return ""
    if ret == 0:
        return "0"
    if not isinstance(ret, str) or not _errno_ok(ret):
        raise InputError(path, line, f"expect ret {ret!r} is no errno C knows")
    return f"-{ret}"


def _value_assert(value) -> str:
    """The check of a byte a read saw (host or guest): null means not the plaintext,
    which no single byte can be asserted against."""
    if value is None:
        return "\t/* expect value null (not the plaintext): not asserted */"
    return f"\tTEST_ASSERT_EQ(val, {value:#04x});"


def _access_want(ev, path: str, line: int) -> str | None:
    """The exit a guest access must end with (KVM_EXIT_HLT: it completed), or None."""
    exp = ev["expect"]
    if "exception" in exp:
        raise InputError(path, line, f"expect exception {exp['exception']!r}: a #VC/#VE needs an SNP/TDX guest")
    if "ret" in exp:
        raise InputError(path, line, f"expect ret on a {ev['op']}: an access has an exit, not a return value")
    if exp.get("signal") is not None:
        raise InputError(path, line, f"expect signal on a {ev['op']}: a guest access raises no host signal")
    if "exit" in exp:
        if exp["exit"] not in EXIT_C:
            raise InputError(path, line, f"expect exit {exp['exit']!r} has no KVM_EXIT_* the program checks")
        return EXIT_C[exp["exit"]]
    if exp.get("ok"):
        return "KVM_EXIT_HLT"
    return None


def render(header: dict, events: Iterable, path: str = "<trace>", vm: str = "platform") -> str:
    """The C source of the selftest for a parsed trace (header, events). An event the
    program cannot express is an InputError naming its line."""
    platform = header["platform"]
    if vm not in VM_CHOICES:
        raise ValueError(f"vm must be one of {VM_CHOICES}, got {vm!r}")
    hline = header.get("line", 1)
    if vm == "platform":
        if platform not in PLATFORM_VM_TYPES:
            raise InputError(path, hline, f"platform {platform!r}: a selftest is written for sw_protected, "
                                          "default, snp, tdx or cca only")
        vm = platform
    cvm = vm in CVM_PLATFORMS
    ps = header.get("page_size", 4096)
    body: list[str] = []
    uses = {vm} if cvm else set()
    pins: dict[int, int] = {}      # page -> pins the trace took and holds (at render time)
    gmem_size = None
    gmem_flags: tuple = ()
    largest_gmem = 0
    n = 0
    for i, ev in enumerate(events):
        line = ev.get("line", i + 2)
        op = ev["op"]
        if "thread" in ev:
            raise InputError(path, line, f"{op} on thread {ev['thread']}: a call in steps (interleavings) "
                                         "is no single call a selftest makes; gmemlab selftest cannot express it")
        if vm == "cca" and op in NOT_ON_CCA:
            raise InputError(path, line, f"{op}: not expressible on cca: {NOT_ON_CCA[op]}; "
                                         "gmemlab selftest cannot express it")
        if cvm and op in NOT_ON_CVM:
            raise InputError(path, line, f"{op}: not expressible on {vm}: {NOT_ON_CVM[op]}; "
                                         "gmemlab selftest cannot express it")
        if not cvm and op in NOT_USERSPACE:
            raise InputError(path, line, f"{op}: not a userspace call on this platform ({NOT_USERSPACE[op]}); "
                                         "gmemlab selftest cannot express it")
        exp = ev.get("expect")
        if exp is None:
            raise InputError(path, line, f"{op} has no \"expect\": a selftest asserts every outcome")
        if op not in ("guest_read", "guest_write"):
            for k in ("exit", "exception"):
                if k in exp:
                    raise InputError(path, line, f"expect {k!r} cannot come from a host {op}")
        if "done" in exp and op != "populate":
            raise InputError(path, line, f"expect 'done' belongs to populate, not {op}")
        n += 1
        note = ev.get("note") or (ev.get("extra") or {}).get("note")
        desc = f"line {line}: {op}" + "".join(
            f" {k} {ev[k]:#x}" if isinstance(ev.get(k), int) and k in ("offset", "size") else ""
            for k in ("offset", "size"))
        if op == "set_attributes":
            desc += f" -> {ev['attributes']}"
        if op in ("guest_read", "guest_write", "map_gpa_range"):
            desc += " (private)" if ev.get("private") else " (shared)"
        if op == "populate":
            desc += " from a buffer" if ev.get("src") == "buffer" else " in place"
        if ev.get("process", "vmm") != "vmm":
            desc += f" [process {ev['process']}]"
        body.append("")
        body.extend(_block_comment(desc + (f": {note}" if note else "")))
        body.append(f"\ttrace_line = {line};")
        want = _want_ret(ev, path, line) if op not in ("host_read", "host_write", "guest_read",
                                                        "guest_write") else ""

        if op == "create_gmem":
            flags = _flags(ev.get("flags", ()), GMEM_FLAG_C, path, line)
            body.append(f"\tr = create_gmem({_u64(ev['size'])}, {flags});")
            if want:
                body.append(f"\tassert_ret(r, {want});")
            if exp.get("ret") == 0:
                gmem_size = ev["size"]
                gmem_flags = tuple(ev.get("flags", ()))
                largest_gmem = max(largest_gmem, gmem_size)
                pins.clear()     # the old file (and the pins on it) are gone from the trace's view
        elif op == "set_attributes":
            uses.add("attributes")
            attrs = "KVM_MEMORY_ATTRIBUTE_PRIVATE" if ev["attributes"] == "private" else "0"
            flags = _flags(ev.get("flags", ()), ATTR_FLAG_C, path, line)
            body.append(f"\tr = set_attributes({_u64(ev['offset'])}, {_u64(ev['size'])}, {attrs}, {flags}, "
                        "&error_offset);")
            body.append(f"\tskip_without_attributes2(r, {want or '0'});")
            if want:
                body.append(f"\tassert_ret(r, {want});")
            if "error_offset" in exp:
                body.append(f"\tTEST_ASSERT_EQ(error_offset, {_u64(exp['error_offset'])});")
        elif op == "punch_hole":
            body.append(f"\tr = punch_hole({_u64(ev['offset'])}, {_u64(ev['size'])});")
            if want:
                body.append(f"\tassert_ret(r, {want});")
        elif op in ("pin", "unpin"):
            uses.add("pin")
            off, size = ev["offset"], ev["size"]
            if size == 0:
                raise InputError(path, line, f"a zero-length {op} has no kernel counterpart (io_uring "
                                             "registers no empty buffer)")
            first, last = off // ps, (off + size - 1) // ps
            if last - first >= MAX_PIN_PAGES:
                raise InputError(path, line, f"a {op} of more than {MAX_PIN_PAGES} pages")
            if op == "unpin":
                if gmem_size is None or (last + 1) * ps > gmem_size:
                    raise InputError(path, line, "an unpin past the end of the guest_memfd has no kernel call")
                if not any(pins.get(p) for p in range(first, last + 1)):
                    raise InputError(path, line, "no pin of this trace covers the range: there is no kernel "
                                                 "call to make")
                for p in range(first, last + 1):
                    if pins.get(p):
                        pins[p] -= 1
            elif exp.get("ret") == 0:
                for p in range(first, last + 1):
                    pins[p] = pins.get(p, 0) + 1
            body.append(f"\tr = {op}_range({_u64(off)}, {_u64(size)});")
            if want:
                body.append(f"\tassert_ret(r, {want});")
        elif op in ("host_read", "host_write"):
            write = op == "host_write"
            child = "1" if ev.get("process", "vmm") != "vmm" else "0"
            value = ev.get("value", 0) if write else 0
            body.append(f"\tr = host_access({_u64(ev['offset'])}, {int(write)}, {value:#04x}, {child}, &val);")
            if "ret" in exp:
                ret = exp["ret"]
                if ret == 0 or not isinstance(ret, str) or not _errno_ok(ret):
                    raise InputError(path, line, f"expect ret {ret!r} on a host access: only an errno of its "
                                                 "mmap can be asserted")
                body.append(f"\tassert_ret(r, -{ret});")
            elif exp.get("signal") is not None:
                sig = exp["signal"]
                if sig != "SIGBUS":
                    raise InputError(path, line, f"expect signal {sig!r}: only SIGBUS is caught")
                body.append("\tassert_access(r, SIGBUS);")
            elif exp.get("ok"):
                body.append("\tassert_access(r, 0);")
            if not write and "value" in exp:
                body.append(_value_assert(exp["value"]))
        elif op == "populate":
            uses.add(vm)
            off, size = ev["offset"], ev["size"]
            if off % ps or size % ps:
                raise InputError(path, line, "an unaligned populate: the launch ioctls take whole pages "
                                             "(gfn_start / gpa and a page count)")
            src = 1 if ev.get("src") == "buffer" else 0
            value = ev.get("value", 0) if src else 0
            body.append(f"\tr = populate({_u64(off)}, {_u64(size)}, {src}, {value:#04x});")
            if want:
                body.append(f"\tassert_ret(r, {want});")
            done = exp.get("done")
            if done is not None:
                if vm == "snp" and exp.get("ret") not in (0, None) and done:
                    body.append("\t/* an SNP error writes nothing back: no progress to check */")
                elif vm == "cca":
                    # api.rst KVM_ARM_RMI_POPULATE: base, size and source_uaddr advance past what
                    # was populated; the struct is copied back on an error too, unchanged
                    moved = min(done * ps, size)
                    body.append(f"\tTEST_ASSERT_EQ(rmi_populate.base, {_u64(off + moved)});")
                    body.append(f"\tTEST_ASSERT_EQ(rmi_populate.size, {_u64(size - moved)});")
                    body.append(f"\tTEST_ASSERT_EQ(rmi_populate.source_uaddr - rmi_source, {_u64(moved)});")
                elif vm == "snp":
                    # amd-memory-encryption.rst: gfn_start and len advance past what was done
                    body.append(f"\tTEST_ASSERT_EQ(snp_update.gfn_start, {_u64(off // ps + done)});")
                    body.append(f"\tTEST_ASSERT_EQ(snp_update.len, {_u64(max(size - done * ps, 0))});")
                else:
                    # intel-tdx.rst / tdx_vcpu_init_mem_region: gpa and nr_pages advance per page added
                    body.append(f"\tTEST_ASSERT_EQ(tdx_region.gpa, {_u64(off + done * ps)});")
                    body.append(f"\tTEST_ASSERT_EQ(tdx_region.nr_pages, {_u64(max(size // ps - done, 0))});")
        elif op == "finalize":
            uses.add(vm)
            body.append("\tr = finalize();")
            if want:
                body.append(f"\tassert_ret(r, {want});")
        elif op in ("guest_read", "guest_write"):
            uses.add("vcpu")
            off = ev["offset"]
            if vm == "default" and ev["private"]:
                raise InputError(path, line, "a private guest access: a default VM has no private view (no "
                                             "C-bit or shared bit, no private memory)")
            if vm == "default" and "MMAP" not in gmem_flags:
                raise InputError(path, line, "the guest does not reach a guest_memfd created without MMAP on a "
                                             "default VM: its memslot is not guest_memfd-only, so the access "
                                             "goes to userspace_addr (kvm_gmem_bind, virt/kvm/guest_memfd.c)")
            if off >= GUEST_CODE_GPA or largest_gmem > GUEST_CODE_GPA:
                raise InputError(path, line, "the guest_memfd reaches the guest program's page (one page "
                                             "below 4 GiB)")
            write = op == "guest_write"
            value = ev.get("value", 0) if write else 0
            body.append(f"\tr = guest_access({_u64(off)}, {int(write)}, {value:#04x}, &val);")
            access = _access_want(ev, path, line)
            if access:
                body.append(f"\tassert_exit(r, {access});")
            if not write and "value" in exp:
                body.append(_value_assert(exp["value"]))
        elif op == "map_gpa_range":
            uses.update(("vcpu", "hypercall", "attributes"))
            if largest_gmem > GUEST_CODE_GPA:
                raise InputError(path, line, "the guest_memfd reaches the guest program's page (one page "
                                             "below 4 GiB)")
            private = "1" if ev["private"] else "0"
            body.append(f"\tr = map_gpa_range({_u64(ev['offset'])}, {_u64(ev['size'])}, {private});")
            if want:
                body.append(f"\tassert_ret(r, {want});")
        else:
            raise InputError(path, line, f"{op}: gmemlab selftest cannot express it")
    if not n:
        raise InputError(path, hline, "no events: nothing to test")

    name = c_test_name(path)
    out: list[str] = []
    out.append("// SPDX-License-Identifier: GPL-2.0-only")
    out.append("/*")
    out.append(f" * {name}: written by `gmemlab selftest` from {_comment(os.path.basename(str(path)))}")
    out.append(f" * (platform {platform}, series {header.get('series', 'v8')}, run on a "
               f"{PLATFORM_VM_TYPES[vm]}).")
    if header.get("description"):
        out.append(" *")
        out.extend(_wrap(header["description"]))
    out.append(" *")
    out.append(" * Every event of the trace is one call below, in the trace's order, and")
    out.append(" * its outcome is asserted. Exit 0: every outcome matched; 1: one did")
    out.append(" * not (the message names the trace line); 4 (KSFT_SKIP): this machine")
    out.append(" * cannot run it.")
    out.append(" *")
    out.append(f" * Build: gcc -Wall -Werror -o {name} {name}.c")
    out.append(" */")
    out.append(_PREAMBLE)
    out.append("/* ---- gmemlab/render/c/gmemlab_uapi.h ---- */")
    out.append(UAPI_HEADER.read_text(encoding="utf-8").rstrip("\n"))
    out.append("/* ---- end of gmemlab_uapi.h ---- */")
    out.append(f"\n#define TRACE_PAGE_SIZE {ps}UL")
    out.append(f"#define TRACE_VM_TYPE {PLATFORM_VM_TYPES[vm]}")
    if vm == "cca":
        out.append("#define TRACE_REALM 1")
    out.append(_HELPERS)
    parts = (("attributes", _ATTRIBUTES), ("pin", _PINS), ("snp", _SNP), ("tdx", _TDX), ("cca", _CCA),
             ("vcpu", _VCPU), ("hypercall", _HYPERCALL))
    out += [text for part, text in parts if part in uses]      # only the helpers the trace uses
    out.append(f"static void test_{name}(void)")
    out.append("{")
    decls = ["\tint r;", "\tuint8_t val = 0;"]
    if "attributes" in uses:
        decls.append("\tuint64_t error_offset = 0;")
    out.extend(decls)
    out.extend(body)
    out.append("")
    out.append("\t(void)r;")
    out.append("\t(void)val;")
    if "attributes" in uses:
        out.append("\t(void)error_offset;")
    out.append("}")
    out.append("")
    out.append("int main(void)")
    out.append("{")
    out.append("\tsetup_vm();")
    if "vcpu" in uses:
        # the vCPU and the guest program's memslot come first, before any guest_memfd, in the
        # order gmemlab kvm-run makes them (a vCPU created after the guest_memfd's memslot
        # triple-faulted on the Linux 6.18 kvm_pvm machine this was written on)
        out.append("\tsetup_vcpu();")
    if vm in LAUNCH_SETUP:
        # the launch context exists before any launch command (the documented flows)
        out.append(f"\t{vm}_setup();")
    if "hypercall" in uses:
        out.append("\tenable_hypercall_exit();")
    out.append(f"\ttest_{name}();")
    out.append(f'\tprintf("ok {name}: {n} event(s) as the trace expects\\n");')
    out.append("\treturn KSFT_PASS;")
    out.append("}")
    return "\n".join(out) + "\n"


def render_file(path: str, vm: str = "platform") -> str:
    """Read the trace at path and render it (gmemlab.traces.format.load)."""
    from gmemlab.traces.format import load
    header, events = load(path)
    return render(header, events, path, vm)

_PREAMBLE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/falloc.h>
"""

_HELPERS = r"""
#define KSFT_PASS 0
#ifndef __maybe_unused
#define __maybe_unused __attribute__((unused))
#endif
#define KSFT_FAIL 1
#define KSFT_SKIP 4

/* The line of the trace whose event runs (named by every failure). */
static int trace_line;

#define TEST_FAIL(fmt, ...) do {						\
	fprintf(stderr, "FAIL trace line %d (%s:%d): " fmt "\n",		\
		trace_line, __FILE__, __LINE__, ##__VA_ARGS__);			\
	exit(KSFT_FAIL);							\
} while (0)

#define TEST_SKIP(fmt, ...) do {						\
	printf("SKIP: " fmt "\n", ##__VA_ARGS__);				\
	exit(KSFT_SKIP);							\
} while (0)

#define TEST_ASSERT(cond, fmt, ...) do {					\
	if (!(cond))								\
		TEST_FAIL("'%s' failed: " fmt, #cond, ##__VA_ARGS__);		\
} while (0)

#define TEST_ASSERT_EQ(a, b) do {						\
	unsigned long long __a = (a), __b = (b);				\
	TEST_ASSERT(__a == __b, "%s is %#llx, expected %#llx", #a, __a, __b);	\
} while (0)

/* A call's outcome as the helpers return it: 0, or -errno. */
static __maybe_unused void assert_ret(int got, int want)
{
	if (got != want)
		TEST_FAIL("returned %d (%s), expected %d (%s)", got,
			  got ? strerror(-got) : "success", want,
			  want ? strerror(-want) : "success");
}

/* A host access: 0 (done), SIGBUS (faulted), or -errno (mmap refused). */
static __maybe_unused void assert_access(int got, int want)
{
	if (got == want)
		return;
	if (got < 0)
		TEST_FAIL("mmap of the guest_memfd failed: %s", strerror(-got));
	TEST_FAIL("the access %s, expected it to %s", got ? "got SIGBUS" : "succeeded",
		  want ? "get SIGBUS" : "succeed");
}

static int kvm_fd = -1, vm_fd = -1, gmem_fd = -1;
static __maybe_unused int vcpu_fd = -1;
static void *slot_hva;
static size_t slot_len;

static __maybe_unused void setup_vm(void)
{
	int types;

#if defined(TRACE_REALM) && !defined(__aarch64__)
	TEST_SKIP("a CCA Realm (KVM_VM_TYPE_ARM_REALM) needs an arm64 host with the RMM; "
		  "this program was built for another architecture");
#endif
	if (sysconf(_SC_PAGESIZE) != (long)TRACE_PAGE_SIZE)
		TEST_SKIP("the trace's page size is %lu, this machine's %ld",
			  TRACE_PAGE_SIZE, sysconf(_SC_PAGESIZE));
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0)
		TEST_SKIP("/dev/kvm: %s", strerror(errno));
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD) <= 0)
		TEST_SKIP("KVM_CAP_GUEST_MEMFD is not supported");
#ifndef TRACE_REALM
	if (TRACE_VM_TYPE != KVM_X86_DEFAULT_VM) {
		types = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES);
		if (types <= 0 || !(types & (1 << TRACE_VM_TYPE)))
			TEST_SKIP("VM type %d is not supported", TRACE_VM_TYPE);
	}
#else
	(void)types;	/* arm64 has no KVM_CAP_VM_TYPES: KVM_CREATE_VM answers */
#endif
	do {
		vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, TRACE_VM_TYPE);
	} while (vm_fd < 0 && errno == EINTR);
#ifdef TRACE_REALM
	/* kvm_arch_init_vm: EINVAL for a Realm where the RMM is absent */
	if (vm_fd < 0 && errno == EINVAL)
		TEST_SKIP("KVM_CREATE_VM(KVM_VM_TYPE_ARM_REALM): %s (no RMM, or its IPA limit is below "
			  "the default 40 bits)", strerror(errno));
#endif
	TEST_ASSERT(vm_fd >= 0, "KVM_CREATE_VM: %s", strerror(errno));
}

static __maybe_unused void set_slot(uint64_t size, void *hva, int fd)
{
	struct kvm_userspace_memory_region2 region = {
		.slot = 0,
		.flags = fd >= 0 ? KVM_MEM_GUEST_MEMFD : 0,
		.guest_phys_addr = 0,
		.memory_size = size,
		.userspace_addr = (uintptr_t)hva,
		.guest_memfd_offset = 0,
		.guest_memfd = fd >= 0 ? fd : 0,
	};

	TEST_ASSERT(!ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION2, &region),
		    "KVM_SET_USER_MEMORY_REGION2: %s", strerror(errno));
}

/*
 * KVM_CREATE_GUEST_MEMFD; on success the file is bound to memslot 0 at gpa 0
 * (userspace_addr: its own mmap with MMAP, anonymous memory without),
 * replacing the file an earlier create bound.
 */
static __maybe_unused int create_gmem(uint64_t size, uint64_t flags)
{
	struct kvm_create_guest_memfd args = { .size = size, .flags = flags };
	void *hva;
	int fd;

	fd = ioctl(vm_fd, KVM_CREATE_GUEST_MEMFD, &args);
	if (fd < 0)
		return -errno;
	if (gmem_fd >= 0) {
		set_slot(0, slot_hva, gmem_fd);
		munmap(slot_hva, slot_len);
		close(gmem_fd);
	}
	gmem_fd = fd;
	if (flags & GUEST_MEMFD_FLAG_MMAP)
		hva = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	else
		hva = mmap(NULL, size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(hva != MAP_FAILED, "mmap for the memslot: %s", strerror(errno));
	slot_hva = hva;
	slot_len = size;
	set_slot(size, hva, fd);
	return 0;
}

/* fallocate(PUNCH_HOLE | KEEP_SIZE); offset and size are loff_t. */
static __maybe_unused int punch_hole(uint64_t offset, uint64_t size)
{
	int r;

	do {
		r = fallocate(gmem_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)offset, (off_t)size);
	} while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

static sigjmp_buf sigbus_jmp;

static __maybe_unused void sigbus_handler(int sig)
{
	(void)sig;
	siglongjmp(sigbus_jmp, 1);
}

/*
 * Touch the page at offset through a one-page MAP_SHARED mmap of the
 * guest_memfd: a write fills the page with value, a read takes the byte at
 * offset into *out.  Returns 0, SIGBUS, or -errno when mmap refuses.
 */
static __maybe_unused int __host_access(uint64_t offset, int is_write, uint8_t value, uint8_t *out)
{
	uint64_t page = offset & ~(TRACE_PAGE_SIZE - 1);
	struct sigaction sa = { .sa_handler = sigbus_handler }, old;
	volatile uint8_t *mem;
	volatile int r = 0;

	mem = mmap(NULL, TRACE_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
		   gmem_fd, (off_t)page);
	if (mem == MAP_FAILED)
		return -errno;
	sigemptyset(&sa.sa_mask);
	TEST_ASSERT(!sigaction(SIGBUS, &sa, &old), "sigaction: %s", strerror(errno));
	if (!sigsetjmp(sigbus_jmp, 1)) {
		if (is_write)
			memset((void *)mem, value, TRACE_PAGE_SIZE);
		else
			*out = mem[offset - page];
	} else {
		r = SIGBUS;
	}
	sigaction(SIGBUS, &old, NULL);
	munmap((void *)mem, TRACE_PAGE_SIZE);
	return r;
}

/* The access, in this process or in a forked child (another host process). */
static __maybe_unused int host_access(uint64_t offset, int is_write, uint8_t value, int child, uint8_t *out)
{
	int pipefd[2], status, res[2] = { 0, 0 };
	uint8_t v = 0;
	pid_t pid;

	if (!child)
		return __host_access(offset, is_write, value, out);
	TEST_ASSERT(!pipe(pipefd), "pipe: %s", strerror(errno));
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork: %s", strerror(errno));
	if (!pid) {
		res[0] = __host_access(offset, is_write, value, &v);
		res[1] = v;
		_exit(write(pipefd[1], res, sizeof(res)) == sizeof(res) ? 0 : 1);
	}
	close(pipefd[1]);
	TEST_ASSERT(read(pipefd[0], res, sizeof(res)) == sizeof(res), "the child reported nothing");
	close(pipefd[0]);
	TEST_ASSERT(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && !WEXITSTATUS(status),
		    "the child failed");
	*out = (uint8_t)res[1];
	return res[0];
}

/*
 * The source of a launch command (LAUNCH_UPDATE, INIT_MEM_REGION): none, the
 * destination is its own source (in place), or a buffer of size bytes
 * holding value (the legacy copy path).
 */
static __maybe_unused void *launch_source(uint64_t size, int from_buffer, uint8_t value)
{
	void *buf;

	if (!from_buffer)
		return NULL;
	buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(buf != MAP_FAILED, "mmap of the source: %s", strerror(errno));
	memset(buf, value, size);
	return buf;
}
"""

_ATTRIBUTES = r"""
/* KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd: 0 or -errno, and error_offset. */
static __maybe_unused int set_attributes(uint64_t offset, uint64_t size, uint64_t attributes,
			  uint64_t flags, uint64_t *error_offset)
{
	struct kvm_memory_attributes2 attr = {
		.offset = offset,
		.size = size,
		.attributes = attributes,
		.flags = flags,
	};
	int r;

	r = ioctl(gmem_fd, KVM_SET_MEMORY_ATTRIBUTES2, &attr);
	*error_offset = attr.error_offset;
	return r < 0 ? -errno : 0;
}

/* A kernel without in-place conversion answers ENOTTY: skip, do not fail. */
static __maybe_unused void skip_without_attributes2(int got, int want)
{
	if (got == -ENOTTY && want != -ENOTTY)
		TEST_SKIP("KVM_SET_MEMORY_ATTRIBUTES2 on a guest_memfd is not in this kernel");
}
"""

_PINS = r"""
#include <linux/io_uring.h>

/*
 * A long-term pin without debugfs: the page, mapped MAP_SHARED, is registered
 * as an io_uring fixed buffer (GUP with FOLL_LONGTERM), one ring per page, so
 * that unpin drops one page's reference by unregistering.
 */
#define MAX_PINS 4096
static struct pin {
	uint64_t page;
	int ring;
	void *map;
} pins[MAX_PINS];
static int nr_pins;

static __maybe_unused void release_pin(int i)
{
	syscall(__NR_io_uring_register, pins[i].ring, IORING_UNREGISTER_BUFFERS, NULL, 0);
	close(pins[i].ring);
	munmap(pins[i].map, TRACE_PAGE_SIZE);
	pins[i] = pins[--nr_pins];
}

static __maybe_unused int pin_range(uint64_t offset, uint64_t size)
{
	uint64_t page, last = (offset + size - 1) & ~(TRACE_PAGE_SIZE - 1);
	int start = nr_pins, ring, err;
	struct io_uring_params params;
	struct iovec iov;
	void *map;

	for (page = offset & ~(TRACE_PAGE_SIZE - 1); page <= last; page += TRACE_PAGE_SIZE) {
		TEST_ASSERT(nr_pins < MAX_PINS, "too many pins");
		map = mmap(NULL, TRACE_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
			   gmem_fd, (off_t)page);
		if (map == MAP_FAILED) {
			err = -errno;
			goto undo;
		}
		memset(&params, 0, sizeof(params));
		ring = syscall(__NR_io_uring_setup, 1, &params);
		if (ring < 0)
			TEST_SKIP("io_uring_setup: %s (the pin needs io_uring)", strerror(errno));
		iov.iov_base = map;
		iov.iov_len = TRACE_PAGE_SIZE;
		if (syscall(__NR_io_uring_register, ring, IORING_REGISTER_BUFFERS, &iov, 1) < 0) {
			err = -errno;
			close(ring);
			munmap(map, TRACE_PAGE_SIZE);
			if (err == -ENOMEM || err == -EPERM)
				TEST_SKIP("io_uring cannot take the pin: %s (RLIMIT_MEMLOCK?)",
					  strerror(-err));
			goto undo;
		}
		pins[nr_pins++] = (struct pin){ .page = page, .ring = ring, .map = map };
	}
	return 0;
undo:	/* all or nothing */
	while (nr_pins > start)
		release_pin(nr_pins - 1);
	return err;
}

static __maybe_unused int unpin_range(uint64_t offset, uint64_t size)
{
	uint64_t page, last = (offset + size - 1) & ~(TRACE_PAGE_SIZE - 1);
	int i;

	for (page = offset & ~(TRACE_PAGE_SIZE - 1); page <= last; page += TRACE_PAGE_SIZE) {
		for (i = nr_pins - 1; i >= 0; i--) {
			if (pins[i].page == page) {
				release_pin(i);
				break;
			}
		}
	}
	return 0;
}
"""

_SNP = r"""
/*
 * SEV-SNP launch, as Documentation/virt/kvm/x86/amd-memory-encryption.rst
 * describes it: each command is KVM_MEMORY_ENCRYPT_OP on the VM with a
 * struct kvm_sev_cmd naming /dev/sev; "error" carries the firmware's status.
 */
static int sev_fd = -1;
static struct kvm_sev_snp_launch_update snp_update;	/* the last LAUNCH_UPDATE, as written back */

static __maybe_unused int snp_cmd(uint32_t id, void *data, uint32_t *fw_error)
{
	struct kvm_sev_cmd cmd = { .id = id, .data = (uintptr_t)data, .sev_fd = (uint32_t)sev_fd };
	int r;

	r = ioctl(vm_fd, KVM_MEMORY_ENCRYPT_OP, &cmd);
	*fw_error = cmd.error;
	return r < 0 ? -errno : 0;
}

/* KVM_SEV_INIT2, then KVM_SEV_SNP_LAUNCH_START: the launch context exists. */
static __maybe_unused void snp_setup(void)
{
	struct kvm_sev_init init = { 0 };	/* no VMSA features; ghcb_version 0: KVM's default */
	struct kvm_sev_snp_launch_start start = {
		.policy = SNP_POLICY_SMT | SNP_POLICY_RSVD_MBO,
	};
	uint32_t fw = 0;
	int r;

	sev_fd = open("/dev/sev", O_RDWR | O_CLOEXEC);
	if (sev_fd < 0)
		TEST_SKIP("/dev/sev: %s (the SNP launch commands need the PSP)", strerror(errno));
	r = snp_cmd(KVM_SEV_INIT2, &init, &fw);
	TEST_ASSERT(!r, "KVM_SEV_INIT2: %s (firmware error %#x)", strerror(-r), fw);
	r = snp_cmd(KVM_SEV_SNP_LAUNCH_START, &start, &fw);
	TEST_ASSERT(!r, "KVM_SEV_SNP_LAUNCH_START: %s (firmware error %#x)", strerror(-r), fw);
}

/*
 * KVM_SEV_SNP_LAUNCH_UPDATE of [offset, offset + size): in place (uaddr 0,
 * the destination is its own source) or from a buffer filled with value.
 * snp_update keeps what the kernel wrote back (gfn_start, len advanced past
 * the pages done when it returns 0).
 */
static __maybe_unused int populate(uint64_t offset, uint64_t size, int from_buffer, uint8_t value)
{
	void *buf = launch_source(size, from_buffer, value);
	uint32_t fw = 0;
	int r;

	snp_update = (struct kvm_sev_snp_launch_update){
		.gfn_start = offset / TRACE_PAGE_SIZE,
		.uaddr = (uintptr_t)buf,
		.len = size,
		.type = KVM_SEV_SNP_PAGE_TYPE_NORMAL,
	};
	r = snp_cmd(KVM_SEV_SNP_LAUNCH_UPDATE, &snp_update, &fw);
	if (buf)
		munmap(buf, size);
	return r;
}

/* KVM_SEV_SNP_LAUNCH_FINISH: no ID block, no author key, no host data. */
static __maybe_unused int finalize(void)
{
	struct kvm_sev_snp_launch_finish finish = { 0 };
	uint32_t fw = 0;

	return snp_cmd(KVM_SEV_SNP_LAUNCH_FINISH, &finish, &fw);
}
"""

_TDX = r"""
/*
 * TDX launch, as Documentation/virt/kvm/x86/intel-tdx.rst describes it: each
 * command is KVM_MEMORY_ENCRYPT_OP with a struct kvm_tdx_cmd, on the VM
 * (CAPABILITIES, INIT_VM, FINALIZE_VM) or on a vCPU (INIT_VCPU,
 * INIT_MEM_REGION); hw_error carries the TDX module's status.
 */
#define TDX_MAX_CPUID 256
static struct kvm_tdx_init_mem_region tdx_region;	/* the last INIT_MEM_REGION, as written back */

static __maybe_unused int tdx_cmd(int fd, uint32_t id, uint32_t flags, uint64_t data, uint64_t *hw_error)
{
	struct kvm_tdx_cmd cmd = { .id = id, .flags = flags, .data = data };
	int r;

	r = ioctl(fd, KVM_MEMORY_ENCRYPT_OP, &cmd);
	*hw_error = cmd.hw_error;
	return r < 0 ? -errno : 0;
}

/*
 * The documented creation flow: KVM_TDX_CAPABILITIES; KVM_TDX_INIT_VM with
 * the CPUID KVM supports, cut down to what the TDX module lets userspace
 * configure; then the vCPU (a TD's APIC is in-kernel x2APIC with the I/O
 * APIC in userspace: KVM_CAP_SPLIT_IRQCHIP first) and KVM_TDX_INIT_VCPU.
 */
static __maybe_unused void tdx_setup(void)
{
	size_t cpuid_size = sizeof(struct kvm_cpuid2) + TDX_MAX_CPUID * sizeof(struct kvm_cpuid_entry2);
	struct kvm_tdx_capabilities *caps = calloc(1, sizeof(*caps) + TDX_MAX_CPUID * sizeof(struct kvm_cpuid_entry2));
	struct kvm_tdx_init_vm *init = calloc(1, sizeof(*init) + TDX_MAX_CPUID * sizeof(struct kvm_cpuid_entry2));
	struct kvm_cpuid2 *supported = calloc(1, cpuid_size);
	struct kvm_enable_cap split = { .cap = KVM_CAP_SPLIT_IRQCHIP, .args = { 24 } };
	uint64_t hw = 0;
	uint32_t i, j, n = 0;
	int r;

	TEST_ASSERT(caps && init && supported, "out of memory");
	caps->cpuid.nent = TDX_MAX_CPUID;
	r = tdx_cmd(vm_fd, KVM_TDX_CAPABILITIES, 0, (uintptr_t)caps, &hw);
	TEST_ASSERT(!r, "KVM_TDX_CAPABILITIES: %s (TDX module status %#llx)", strerror(-r),
		    (unsigned long long)hw);
	supported->nent = TDX_MAX_CPUID;
	TEST_ASSERT(!ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, supported),
		    "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
	for (i = 0; i < supported->nent; i++) {
		for (j = 0; j < caps->cpuid.nent; j++) {
			struct kvm_cpuid_entry2 *c = &caps->cpuid.entries[j], *e = &supported->entries[i];

			if (c->function != e->function || c->index != e->index)
				continue;
			init->cpuid.entries[n] = *e;
			init->cpuid.entries[n].eax &= c->eax;
			init->cpuid.entries[n].ebx &= c->ebx;
			init->cpuid.entries[n].ecx &= c->ecx;
			init->cpuid.entries[n].edx &= c->edx;
			n++;
			break;
		}
	}
	init->cpuid.nent = n;
	init->attributes = 0;				/* no debug, no other TD attribute */
	init->xfam = caps->supported_xfam & 0x3;	/* x87 and SSE, the XFAM every TD has */
	TEST_ASSERT(!ioctl(vm_fd, KVM_ENABLE_CAP, &split), "KVM_CAP_SPLIT_IRQCHIP: %s", strerror(errno));
	r = tdx_cmd(vm_fd, KVM_TDX_INIT_VM, 0, (uintptr_t)init, &hw);
	TEST_ASSERT(!r, "KVM_TDX_INIT_VM: %s (TDX module status %#llx)", strerror(-r), (unsigned long long)hw);
	vcpu_fd = ioctl(vm_fd, KVM_CREATE_VCPU, 0);
	TEST_ASSERT(vcpu_fd >= 0, "KVM_CREATE_VCPU: %s", strerror(errno));
	r = tdx_cmd(vcpu_fd, KVM_TDX_INIT_VCPU, 0, 0, &hw);
	TEST_ASSERT(!r, "KVM_TDX_INIT_VCPU: %s (TDX module status %#llx)", strerror(-r),
		    (unsigned long long)hw);
	free(supported);
	free(init);
	free(caps);
}

/*
 * KVM_TDX_INIT_MEM_REGION (measured) of [offset, offset + size): in place
 * (source_addr 0) or from a buffer filled with value.  tdx_region keeps what
 * the kernel wrote back: gpa and nr_pages advanced past the pages added.
 */
static __maybe_unused int populate(uint64_t offset, uint64_t size, int from_buffer, uint8_t value)
{
	void *buf = launch_source(size, from_buffer, value);
	uint64_t hw = 0;
	int r;

	tdx_region = (struct kvm_tdx_init_mem_region){
		.source_addr = (uintptr_t)buf,
		.gpa = offset,
		.nr_pages = size / TRACE_PAGE_SIZE,
	};
	r = tdx_cmd(vcpu_fd, KVM_TDX_INIT_MEM_REGION, KVM_TDX_MEASURE_MEMORY_REGION,
		    (uintptr_t)&tdx_region, &hw);
	if (buf)
		munmap(buf, size);
	return r;
}

/* KVM_TDX_FINALIZE_VM: the measurement is complete, the TD may run. */
static __maybe_unused int finalize(void)
{
	uint64_t hw = 0;

	return tdx_cmd(vm_fd, KVM_TDX_FINALIZE_VM, 0, 0, &hw);
}
"""

_CCA = r"""
/*
 * Arm CCA Realm launch, as Documentation/virt/kvm/api.rst of Steven Price's
 * KVM CCA series describes it (4.145 KVM_ARM_RMI_POPULATE).  Nothing is set
 * up first: the Realm descriptor is created at the first populate
 * (realm_ensure_created, arch/arm64/kvm/rmi.c) and the Realm is activated at
 * the first KVM_RUN.  A populate copies from a source (never in place) and
 * is measured; the kernel writes the struct back, also on an error.
 */
static struct kvm_arm_rmi_populate rmi_populate;	/* the last populate, as written back */
static uint64_t rmi_source;				/* its source_uaddr as passed */

/*
 * KVM_ARM_RMI_POPULATE of [offset, offset + size) from a buffer filled with
 * value, or with source_uaddr 0 (no source).  rmi_populate keeps base, size
 * and source_uaddr as the kernel advanced them past the pages populated.
 */
static __maybe_unused int populate(uint64_t offset, uint64_t size, int from_buffer, uint8_t value)
{
	void *buf = launch_source(size, from_buffer, value);
	int r;

	rmi_source = (uintptr_t)buf;
	rmi_populate = (struct kvm_arm_rmi_populate){
		.base = offset,
		.size = size,
		.source_uaddr = rmi_source,
		.flags = KVM_ARM_RMI_POPULATE_FLAGS_MEASURE,
	};
	r = ioctl(vm_fd, KVM_ARM_RMI_POPULATE, &rmi_populate);
	r = r < 0 ? -errno : 0;
	if (buf)
		munmap(buf, size);
	return r;
}
"""

_VCPU = r"""
/*
 * The guest program: real-mode (16-bit) code in its own memslot, one page
 * below 4 GiB, where a code segment with an explicit base reaches it (the
 * same program gmemlab kvm-run runs, gmemlab/kvm/runner.py):
 *   0x00: mov al, [bx]; hlt		guest_read: the byte at ds:bx
 *   0x08: rep stosb; hlt		guest_write: cx bytes of al at es:di
 *   0x10: vmcall; hlt			a hypercall: nr in ax, arguments in bx, cx, dx
 */
#define GUEST_CODE_GPA 0xfffff000ULL
#define GUEST_READ_RIP 0x00
#define GUEST_WRITE_RIP 0x08
#define GUEST_HYPERCALL_RIP 0x10
#define GUEST_CODE_SLOT 1
static const uint8_t guest_code[] = {
	0x8a, 0x07, 0xf4, 0, 0, 0, 0, 0,
	0xf3, 0xaa, 0xf4, 0, 0, 0, 0, 0,
	0x0f, 0x01, 0xc1, 0xf4,
};
static struct kvm_run *run;
static struct kvm_sregs reset_sregs;

/* The vCPU, its kvm_run and the guest program's memslot, made at first use. */
static __maybe_unused void setup_vcpu(void)
{
	struct kvm_userspace_memory_region2 code_region = {
		.slot = GUEST_CODE_SLOT,
		.guest_phys_addr = GUEST_CODE_GPA,
		.memory_size = TRACE_PAGE_SIZE,
	};
	void *code;
	int size;

	if (vcpu_fd >= 0)
		return;
	code = mmap(NULL, TRACE_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(code != MAP_FAILED, "mmap for the guest program: %s", strerror(errno));
	memcpy(code, guest_code, sizeof(guest_code));
	code_region.userspace_addr = (uintptr_t)code;
	TEST_ASSERT(!ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION2, &code_region),
		    "KVM_SET_USER_MEMORY_REGION2 (the guest program): %s", strerror(errno));
	vcpu_fd = ioctl(vm_fd, KVM_CREATE_VCPU, 0);
	TEST_ASSERT(vcpu_fd >= 0, "KVM_CREATE_VCPU: %s", strerror(errno));
	size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	TEST_ASSERT(size >= (int)sizeof(struct kvm_run), "KVM_GET_VCPU_MMAP_SIZE: %d", size);
	run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd, 0);
	TEST_ASSERT(run != MAP_FAILED, "mmap of kvm_run: %s", strerror(errno));
	TEST_ASSERT(!ioctl(vcpu_fd, KVM_GET_SREGS, &reset_sregs), "KVM_GET_SREGS: %s", strerror(errno));
}

/* Real mode at the reset state, code at GUEST_CODE_GPA, data segments at the page of gpa. */
static __maybe_unused void start_guest(uint64_t rip, uint64_t gpa, struct kvm_regs *regs)
{
	struct kvm_sregs sregs = reset_sregs;
	uint64_t base = gpa & ~(TRACE_PAGE_SIZE - 1);

	setup_vcpu();
	sregs.cs.base = GUEST_CODE_GPA;
	sregs.cs.selector = 0;
	sregs.ds.base = sregs.es.base = base;
	sregs.ds.selector = sregs.es.selector = 0;
	sregs.ds.limit = sregs.es.limit = 0xffff;
	TEST_ASSERT(!ioctl(vcpu_fd, KVM_SET_SREGS, &sregs), "KVM_SET_SREGS: %s", strerror(errno));
	regs->rip = rip;
	regs->rflags = 2;
	TEST_ASSERT(!ioctl(vcpu_fd, KVM_SET_REGS, regs), "KVM_SET_REGS: %s", strerror(errno));
}

/*
 * KVM_RUN until a real exit: the exit reason, KVM_EXIT_MEMORY_FAULT when the
 * run failed with one (api.rst: KVM_RUN returns -EFAULT or -EHWPOISON with
 * it), or -errno.  A guest that does not exit within GUEST_TIMEOUT_S fails
 * the test (SIGALRM) instead of hanging it.
 */
#define GUEST_TIMEOUT_S 10

static __maybe_unused void guest_timeout(int sig)
{
	(void)sig;
	TEST_FAIL("the guest did not exit within %d s", GUEST_TIMEOUT_S);
}

static __maybe_unused int vcpu_run(void)
{
	int r;

	signal(SIGALRM, guest_timeout);
	alarm(GUEST_TIMEOUT_S);
	do {
		run->exit_reason = KVM_EXIT_UNKNOWN;
		r = ioctl(vcpu_fd, KVM_RUN, 0);
	} while (r < 0 && errno == EINTR);
	alarm(0);
	if (r < 0)
		return run->exit_reason == KVM_EXIT_MEMORY_FAULT ? KVM_EXIT_MEMORY_FAULT : -errno;
	return run->exit_reason;
}

/*
 * The vCPU reads the byte at gpa (into *out) or fills its page with value.
 * Returns the exit: KVM_EXIT_HLT when the access completed.  An MMIO or I/O
 * exit is completed at once (immediate_exit: the next KVM_RUN finishes the
 * instruction and returns EINTR) so that the vCPU is ready for the next one.
 */
static __maybe_unused int guest_access(uint64_t gpa, int is_write, uint8_t value, uint8_t *out)
{
	struct kvm_regs regs = {
		.rax = value,
		.rbx = gpa & (TRACE_PAGE_SIZE - 1),
		.rcx = TRACE_PAGE_SIZE,
		.rdi = 0,
	};
	int r;

	start_guest(is_write ? GUEST_WRITE_RIP : GUEST_READ_RIP, gpa, &regs);
	r = vcpu_run();
	if (r == KVM_EXIT_HLT) {
		TEST_ASSERT(!ioctl(vcpu_fd, KVM_GET_REGS, &regs), "KVM_GET_REGS: %s", strerror(errno));
		*out = (uint8_t)regs.rax;
	} else if (r == KVM_EXIT_MMIO || r == KVM_EXIT_IO) {
		run->immediate_exit = 1;
		ioctl(vcpu_fd, KVM_RUN, 0);
		run->immediate_exit = 0;
	}
	return r;
}

static __maybe_unused const char *exit_name(int reason)
{
	switch (reason) {
	case KVM_EXIT_HLT: return "KVM_EXIT_HLT (done)";
	case KVM_EXIT_MMIO: return "KVM_EXIT_MMIO";
	case KVM_EXIT_IO: return "KVM_EXIT_IO";
	case KVM_EXIT_MEMORY_FAULT: return "KVM_EXIT_MEMORY_FAULT";
	case KVM_EXIT_SHUTDOWN: return "KVM_EXIT_SHUTDOWN";
	case KVM_EXIT_INTERNAL_ERROR: return "KVM_EXIT_INTERNAL_ERROR";
	case KVM_EXIT_HYPERCALL: return "KVM_EXIT_HYPERCALL";
	default: return "another exit";
	}
}

/* A guest access's outcome: the exit it ended with, or -errno of KVM_RUN. */
static __maybe_unused void assert_exit(int got, int want)
{
	if (got < 0)
		TEST_FAIL("KVM_RUN failed: %s, expected %s", strerror(-got), exit_name(want));
	if (got != want)
		TEST_FAIL("the guest's access ended with %s (%d), expected %s (%d)",
			  exit_name(got), got, exit_name(want), want);
}
"""

_HYPERCALL = r"""
/*
 * KVM_HC_MAP_GPA_RANGE reaches userspace only when KVM_CAP_EXIT_HYPERCALL
 * enables it (Documentation/virt/kvm/x86/hypercalls.rst, KVM_HC_MAP_GPA_RANGE).
 */
static __maybe_unused void enable_hypercall_exit(void)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_EXIT_HYPERCALL, .args = { 1ULL << KVM_HC_MAP_GPA_RANGE } };
	int r = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_EXIT_HYPERCALL);

	if (r <= 0 || !(r & (1 << KVM_HC_MAP_GPA_RANGE)))
		TEST_SKIP("KVM_CAP_EXIT_HYPERCALL does not offer KVM_HC_MAP_GPA_RANGE");
	TEST_ASSERT(!ioctl(vm_fd, KVM_ENABLE_CAP, &cap), "KVM_ENABLE_CAP(EXIT_HYPERCALL): %s", strerror(errno));
}

/*
 * The guest asks to map [gpa, gpa + size) private or shared.  The exit to
 * userspace is answered as a VMM answers it: KVM_SET_MEMORY_ATTRIBUTES2 on
 * the range, its result the hypercall's.  Returns what the guest sees in
 * RAX (0, or -KVM_EINVAL when KVM refuses the arguments without exiting),
 * as an int: the guest runs in real mode, so KVM truncates it to 32 bits.
 */
static __maybe_unused int map_gpa_range(uint64_t gpa, uint64_t size, int private)
{
	struct kvm_regs regs = {
		.rax = KVM_HC_MAP_GPA_RANGE,
		.rbx = gpa,
		.rcx = size / TRACE_PAGE_SIZE,
		.rdx = private ? KVM_MAP_GPA_RANGE_ENCRYPTED : 0,
	};
	uint64_t error_offset;
	int r;

	start_guest(GUEST_HYPERCALL_RIP, 0, &regs);
	r = vcpu_run();
	if (r == KVM_EXIT_HYPERCALL) {
		TEST_ASSERT_EQ(run->hypercall.nr, KVM_HC_MAP_GPA_RANGE);
		r = set_attributes(run->hypercall.args[0], run->hypercall.args[1] * TRACE_PAGE_SIZE,
				   run->hypercall.args[2] & KVM_MAP_GPA_RANGE_ENCRYPTED ?
				   KVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0, &error_offset);
		skip_without_attributes2(r, 0);
		run->hypercall.ret = (uint64_t)(int64_t)r;
		r = vcpu_run();
	}
	assert_exit(r, KVM_EXIT_HLT);
	TEST_ASSERT(!ioctl(vcpu_fd, KVM_GET_REGS, &regs), "KVM_GET_REGS: %s", strerror(errno));
	return (int)(int32_t)regs.rax;
}
"""
