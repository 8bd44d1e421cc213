"""A trace as a C selftest: ``gmemlab selftest TRACE [-o FILE.c]`` (docs/cli.md).

The trace (a counterexample of ``gmemlab explore``, or any gmemlab-trace/1 file whose
events all carry "expect") becomes one C program in the style of the series'
tools/testing/selftests/kvm/x86/guest_memfd_conversions_test.c: the same calls in the
same order, each outcome asserted. The program is standalone: its assertion macros are
its own (the kselftest harness is not needed), and the guest_memfd uAPI it needs comes
from gmemlab/render/c/gmemlab_uapi.h, copied into the file (guarded by #ifndef, so newer
installed headers win). It builds with ``gcc -Wall -Werror -o t t.c``; it exits 0 when
every outcome matches, 1 at the first that does not (naming the trace line), and 4
(KSFT_SKIP) when the machine lacks /dev/kvm, the VM type, or KVM_SET_MEMORY_ATTRIBUTES2.

What userspace drives on a sw_protected or default VM is expressed:

- create_gmem: KVM_CREATE_GUEST_MEMFD, then KVM_SET_USER_MEMORY_REGION2 binds it to
  memslot 0 at gpa 0 (the trace format's meaning), replacing an older file.
- set_attributes: KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd; error_offset checked.
- host_read / host_write: a one-page MAP_SHARED mmap of the file; SIGBUS is caught
  with sigsetjmp/siglongjmp. A write fills the page, a read checks the byte. An access
  of another "process" than the VMM runs in a forked child.
- punch_hole: fallocate(PUNCH_HOLE | KEEP_SIZE).
- pin / unpin: a long-term pin without debugfs, as gmemlab kvm-run takes it: each page
  is registered as an io_uring fixed buffer (FOLL_LONGTERM), one ring per page.

populate, finalize, guest_* and map_gpa_range are not userspace calls on these
platforms (no trusted entity; the vCPU's accesses need a guest program): such a trace
is an InputError naming the line (exit 2), as is an event without "expect".

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
PLATFORM_VM_TYPES = {"sw_protected": "KVM_X86_SW_PROTECTED_VM", "default": "KVM_X86_DEFAULT_VM"}
VM_CHOICES = ("platform", "sw_protected", "default")
GMEM_FLAG_C = {"MMAP": "GUEST_MEMFD_FLAG_MMAP", "INIT_SHARED": "GUEST_MEMFD_FLAG_INIT_SHARED",
               "NO_DIRECT_MAP": "GUEST_MEMFD_FLAG_NO_DIRECT_MAP"}
ATTR_FLAG_C = {"ZERO": "KVM_SET_MEMORY_ATTRIBUTES2_ZERO", "PRESERVE": "KVM_SET_MEMORY_ATTRIBUTES2_PRESERVE"}
# Ops that are no userspace call on sw_protected or default, and why.
NOT_USERSPACE = {
    "populate": "populate is a launch ioctl of SNP/TDX (KVM_SEV_SNP_LAUNCH_UPDATE, KVM_TDX_INIT_MEM_REGION)",
    "finalize": "finalize is a launch ioctl of SNP/TDX (KVM_SEV_SNP_LAUNCH_FINISH, KVM_TDX_FINALIZE_VM)",
    "guest_read": "a guest access needs a vCPU running guest code",
    "guest_write": "a guest access needs a vCPU running guest code",
    "guest_accept": "guest_accept is PVALIDATE / TDG.MEM.PAGE.ACCEPT of a trusted entity",
    "map_gpa_range": "map_gpa_range is the guest's KVM_HC_MAP_GPA_RANGE hypercall",
}
MAX_PIN_PAGES = 4096


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


def render(header: dict, events: Iterable, path: str = "<trace>", vm: str = "platform") -> str:
    """The C source of the selftest for a parsed trace (header, events). An event the
    program cannot express is an InputError naming its line."""
    platform = header["platform"]
    if vm not in VM_CHOICES:
        raise ValueError(f"vm must be one of {VM_CHOICES}, got {vm!r}")
    hline = header.get("line", 1)
    if vm == "platform":
        if platform not in PLATFORM_VM_TYPES:
            raise InputError(path, hline, f"platform {platform!r}: a selftest is written for sw_protected or "
                                          "default only (SNP and TDX launches need their firmware)")
        vm = platform
    ps = header.get("page_size", 4096)
    body: list[str] = []
    uses = set()
    pins: dict[int, int] = {}      # page -> pins the trace took and holds (at render time)
    gmem_size = None
    n = 0
    for i, ev in enumerate(events):
        line = ev.get("line", i + 2)
        op = ev["op"]
        if op in NOT_USERSPACE:
            raise InputError(path, line, f"{op}: not a userspace call on this platform ({NOT_USERSPACE[op]}); "
                                         "gmemlab selftest cannot express it")
        exp = ev.get("expect")
        if exp is None:
            raise InputError(path, line, f"{op} has no \"expect\": a selftest asserts every outcome")
        for k in ("exit", "exception", "done"):
            if k in exp:
                raise InputError(path, line, f"expect {k!r} cannot come from a host {op}")
        n += 1
        note = ev.get("note") or (ev.get("extra") or {}).get("note")
        desc = f"line {line}: {op}" + "".join(
            f" {k} {ev[k]:#x}" if isinstance(ev.get(k), int) and k in ("offset", "size") else ""
            for k in ("offset", "size"))
        if op == "set_attributes":
            desc += f" -> {ev['attributes']}"
        if ev.get("process", "vmm") != "vmm":
            desc += f" [process {ev['process']}]"
        body.append("")
        body.extend(_block_comment(desc + (f": {note}" if note else "")))
        body.append(f"\ttrace_line = {line};")
        want = _want_ret(ev, path, line) if op not in ("host_read", "host_write") else ""

        if op == "create_gmem":
            flags = _flags(ev.get("flags", ()), GMEM_FLAG_C, path, line)
            body.append(f"\tr = create_gmem({_u64(ev['size'])}, {flags});")
            if want:
                body.append(f"\tassert_ret(r, {want});")
            if exp.get("ret") == 0:
                gmem_size = ev["size"]
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
                if exp["value"] is None:
                    body.append("\t/* expect value null (not the plaintext): not asserted */")
                else:
                    body.append(f"\tTEST_ASSERT_EQ(val, {exp['value']:#04x});")
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
    out.append(_HELPERS)
    if "attributes" in uses:
        out.append(_ATTRIBUTES)
    if "pin" in uses:
        out.append(_PINS)
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
    out.append("}")
    out.append("")
    out.append("int main(void)")
    out.append("{")
    out.append("\tsetup_vm();")
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
static void *slot_hva;
static size_t slot_len;

static __maybe_unused void setup_vm(void)
{
	int types;

	if (sysconf(_SC_PAGESIZE) != (long)TRACE_PAGE_SIZE)
		TEST_SKIP("the trace's page size is %lu, this machine's %ld",
			  TRACE_PAGE_SIZE, sysconf(_SC_PAGESIZE));
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0)
		TEST_SKIP("/dev/kvm: %s", strerror(errno));
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD) <= 0)
		TEST_SKIP("KVM_CAP_GUEST_MEMFD is not supported");
	if (TRACE_VM_TYPE != KVM_X86_DEFAULT_VM) {
		types = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES);
		if (types <= 0 || !(types & (1 << TRACE_VM_TYPE)))
			TEST_SKIP("VM type %d is not supported", TRACE_VM_TYPE);
	}
	do {
		vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, TRACE_VM_TYPE);
	} while (vm_fd < 0 && errno == EINTR);
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
