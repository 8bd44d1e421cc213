"""The running kernel as the oracle: execute trace events through /dev/kvm.

A trace's events are run on a KVM default VM (KVM_X86_DEFAULT_VM, type 0) of the running
kernel, and each gets the kernel's own outcome, in the vocabulary of the trace format's
"expect" (and of gmemlab.model.step):

- create_gmem: KVM_CREATE_GUEST_MEMFD, then KVM_SET_USER_MEMORY_REGION2 binds the file
  to memslot 0 at gpa 0 (KVM_MEM_GUEST_MEMFD, guest_memfd_offset 0); its userspace_addr
  is the file's own mmap when the file has MMAP (what QEMU and the selftests do for a
  guest_memfd-only memslot), anonymous memory otherwise. A later successful create
  replaces the file and its memslot (the model's A-one-gmem).
- host_read / host_write: a forked child touches the page through a MAP_SHARED mmap of
  the guest_memfd, so that SIGBUS is observed, not fatal ({"signal": "SIGBUS"}); a write
  fills the whole page (a page holds one value in the trace format), a read returns the
  byte at the offset. mmap failing is {"ret": errno} (ENODEV without MMAP: kvm_gmem_mmap).
- punch_hole: fallocate(PUNCH_HOLE | KEEP_SIZE); offset and length are loff_t (signed).
- pin / unpin: a real long-term pin without debugfs: each page of the range is
  registered as an io_uring fixed buffer (IORING_REGISTER_BUFFERS pins it with
  FOLL_LONGTERM), one ring per page so that unpin can drop one page's reference
  (IORING_UNREGISTER_BUFFERS). A pin that fails on one page releases the pages it took
  (the model's A-pin-all-or-nothing).
- guest_read / guest_write: the vCPU runs three bytes of real-mode code from a separate
  memslot: ``mov al, [bx]; hlt`` or ``rep stosb; hlt`` (the whole page), with the data
  segment's base set to the page (KVM_SET_SREGS). HLT gives {"ok": true[, "value"]};
  KVM_EXIT_MMIO (no memslot there) gives {"exit": "MMIO"}.

What a default VM of this kernel cannot express ends the run at that event with a note
naming the line and why (never a guess): see ``Unsupported`` and the checks in
``Machine``. The header of a recording says which kernel, which capabilities, how pins
were taken and how the vCPU reaches memory (see ``vcpu_memory_path``).
"""

from __future__ import annotations

import ctypes
import errno
import faulthandler
import os
import signal
from dataclasses import dataclass, field

from gmemlab.errors import GmemlabError
from gmemlab.kvm import uapi as U

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# The runner's guest code lives in its own memslot, one page below 4 GiB, where a
# real-mode code segment with an explicit base reaches it; a guest_memfd that would
# overlap it leaves the guest without code (guest events then end the run).
CODE_GPA = 0xFFFFF000
GMEM_SLOT, CODE_SLOT = 0, 1
# The guest program (real mode, 16-bit), at these offsets of the code page:
GUEST_READ_RIP = 0x0    # 8A 07     mov al, [bx]      F4  hlt
GUEST_WRITE_RIP = 0x8   # F3 AA     rep stosb (es:di, cx bytes of al)   F4  hlt
GUEST_CODE = bytes([0x8A, 0x07, 0xF4, 0, 0, 0, 0, 0, 0xF3, 0xAA, 0xF4])

MAX_OFF_T = (1 << 63) - 1

PIN_MECHANISM = "io_uring registered buffers (FOLL_LONGTERM), one ring per page"


class KvmUnavailable(GmemlabError):
    """/dev/kvm is missing, or the kernel refuses what the runner needs."""


class Unsupported(Exception):
    """The running kernel cannot express this event: the run ends here."""


def errname(e: int) -> str:
    """The errno's name as the trace format writes it.

    >>> errname(errno.EINVAL), errname(errno.EOPNOTSUPP)
    ('EINVAL', 'EOPNOTSUPP')
    """
    if e == errno.EOPNOTSUPP:
        return "EOPNOTSUPP"  # Python names 95 ENOTSUP; the kernel's name is EOPNOTSUPP
    return errno.errorcode.get(e, f"E{e}")


def _signed(v: int) -> int:
    """A u64 as the kernel's loff_t sees it."""
    return v - (1 << 64) if v >= 1 << 63 else v


# --- libc -------------------------------------------------------------------------------

_libc = None
_MAP_FAILED = ctypes.c_void_p(-1).value


def _c():
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
        lib.ioctl.restype = ctypes.c_int
        lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                             ctypes.c_int64]
        lib.mmap.restype = ctypes.c_void_p
        lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        lib.fallocate.restype = ctypes.c_int
        lib.syscall.restype = ctypes.c_long
        _libc = lib
    return _libc


# How often a call interrupted by a signal (EINTR) is made again before the EINTR stands.
EINTR_RETRIES = 100


def _ioctl(fd: int, request: int, arg=0) -> int:
    """ioctl(2): the return value, or -errno. A call a signal interrupted (EINTR) is made
    again, as a VMM would (CI saw KVM_CREATE_VM fail so once), except KVM_RUN, whose
    EINTR the caller reads as an exit (immediate_exit)."""
    if isinstance(arg, int):
        p = ctypes.c_void_p(arg)
    else:
        p = ctypes.cast(ctypes.byref(arg), ctypes.c_void_p)
    for _ in range(EINTR_RETRIES):
        r = _c().ioctl(fd, request, p)
        if r >= 0:
            return r
        err = ctypes.get_errno()
        if err != errno.EINTR or request == U.KVM_RUN:
            break
    return -err


def _mmap(fd: int, length: int, offset: int = 0, shared: bool = True) -> int:
    """mmap(2) read/write: the address, or -errno."""
    flags = U.MAP_SHARED if shared else (U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    p = _c().mmap(None, length, U.PROT_READ | U.PROT_WRITE, flags, fd, _signed(offset))
    if p is None or p == _MAP_FAILED:
        return -ctypes.get_errno()
    return p


def _munmap(addr: int, length: int) -> None:
    _c().munmap(addr, length)


# --- /dev/kvm ---------------------------------------------------------------------------

@dataclass
class Kvm:
    """/dev/kvm, checked: the API version, a default VM, guest_memfd and memslots v2."""

    path: str = "/dev/kvm"
    fd: int = -1
    release: str = ""
    capabilities: dict = field(default_factory=dict)
    vcpu_mmap_size: int = 0
    _memory_path: str | None = None

    def __post_init__(self):
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise KvmUnavailable(f"{self.path}: {e.strerror}: the kernel oracle needs KVM") from None
        self.release = os.uname().release
        api = _ioctl(self.fd, U.KVM_GET_API_VERSION)
        if api != U.KVM_API_VERSION:
            self._refuse(f"KVM_GET_API_VERSION is {api}, not {U.KVM_API_VERSION}")
        self.vcpu_mmap_size = _ioctl(self.fd, U.KVM_GET_VCPU_MMAP_SIZE)
        if self.vcpu_mmap_size < ctypes.sizeof(U.kvm_run):
            self._refuse(f"KVM_GET_VCPU_MMAP_SIZE is {self.vcpu_mmap_size}")
        vm = _ioctl(self.fd, U.KVM_CREATE_VM, U.KVM_X86_DEFAULT_VM)
        if vm < 0:
            self._refuse(f"KVM_CREATE_VM(KVM_X86_DEFAULT_VM) failed: {errname(-vm)}")
        try:
            caps = {name: _ioctl(vm, U.KVM_CHECK_EXTENSION, cap) for name, cap in U.CAPABILITIES.items()}
        finally:
            os.close(vm)
        self.capabilities = {
            "GUEST_MEMFD": max(caps["GUEST_MEMFD"], 0),
            "GUEST_MEMFD_FLAGS": [n for n, b in U.GMEM_FLAG_BITS.items()
                                  if caps["GUEST_MEMFD_FLAGS"] > 0 and caps["GUEST_MEMFD_FLAGS"] & b],
            "MEMORY_ATTRIBUTES": max(caps["MEMORY_ATTRIBUTES"], 0),
            "USER_MEMORY2": max(caps["USER_MEMORY2"], 0),
            "VM_TYPES": [t for t in range(32) if caps["VM_TYPES"] > 0 and caps["VM_TYPES"] >> t & 1],
        }
        if not self.capabilities["GUEST_MEMFD"]:
            self._refuse("KVM_CAP_GUEST_MEMFD is 0 on a default VM: no guest_memfd")
        if not self.capabilities["USER_MEMORY2"]:
            self._refuse("KVM_CAP_USER_MEMORY2 is 0: no KVM_SET_USER_MEMORY_REGION2")

    def _refuse(self, why: str):
        os.close(self.fd)
        self.fd = -1
        raise KvmUnavailable(f"{self.path} refuses: {why} (Linux {self.release})")

    @property
    def vcpu_memory_path(self) -> str:
        """How this kernel's vCPU reaches a guest_memfd-only memslot (probed once).

        "guest_memfd": the guest's faults take kvm_gmem_get_pfn (__kvm_mmu_faultin_pfn,
        arch/x86/kvm/mmu/mmu.c, Linux 6.18: fault->is_private || kvm_memslot_is_gmem_only),
        as on hardware virtualization. "userspace_addr": the vCPU's accesses go through
        the memslot's userspace_addr instead: the kernel's x86 emulator reads and writes
        guest memory with copy_{from,to}_user (kvm_vcpu_read_guest_page), which is what
        a vCPU without hardware virtualization (e.g. kvm_pvm) does for real-mode code.
        Probe: the host writes a page through the file's mmap while the memslot's
        userspace_addr is other memory, and the guest reads it.
        """
        if self._memory_path is None:
            with Machine(self, probe=True) as m:
                m.create_gmem(PAGE_SIZE, U.GUEST_MEMFD_FLAG_MMAP | U.GUEST_MEMFD_FLAG_INIT_SHARED,
                              userspace_addr="anonymous")
                m.host_access(0, write=True, value=0x5A)
                out = m.guest_access(0, write=False, value=0)
            self._memory_path = "guest_memfd" if out.get("value") == 0x5A else "userspace_addr"
        return self._memory_path

    def header_fields(self) -> dict:
        return {"kernel": self.release, "capabilities": self.capabilities,
                "vcpu_memory_path": self.vcpu_memory_path, "pin": PIN_MECHANISM}

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# --- one VM -----------------------------------------------------------------------------

class Machine:
    """A default VM with one vCPU, the guest code's memslot, and at most one guest_memfd
    bound at gpa 0. ``do(event)`` runs one trace event and returns its outcome, or
    raises Unsupported."""

    def __init__(self, kvm: Kvm, probe: bool = False):
        self.kvm = kvm
        self.vm = _ioctl(kvm.fd, U.KVM_CREATE_VM, U.KVM_X86_DEFAULT_VM)
        if self.vm < 0:
            raise KvmUnavailable(f"KVM_CREATE_VM(KVM_X86_DEFAULT_VM) failed: {errname(-self.vm)}")
        self.probe = probe
        self.gmem = -1                  # the guest_memfd's fd, -1 before a create succeeds
        self.gmem_flags = 0
        self.gmem_size = 0
        self.slot_hva = (0, 0)          # (address, length) of the memslot's userspace_addr mapping
        self.windows: dict[int, int] = {}   # page index -> a one-page MAP_SHARED window of the file
        self.pins: dict[int, list[int]] = {}  # page index -> io_uring fds, one registered page each
        self.code = _mmap(-1, PAGE_SIZE, shared=False)
        ctypes.memmove(self.code, GUEST_CODE, len(GUEST_CODE))
        self.code_slot = self._set_slot(CODE_SLOT, CODE_GPA, PAGE_SIZE, self.code) == 0
        self.vcpu = _ioctl(self.vm, U.KVM_CREATE_VCPU, 0)
        if self.vcpu < 0:
            self.close()
            raise KvmUnavailable(f"KVM_CREATE_VCPU failed: {errname(-self.vcpu)}")
        self.run_addr = _mmap(self.vcpu, kvm.vcpu_mmap_size)
        if self.run_addr < 0:
            self.close()
            raise KvmUnavailable(f"mmap of the vCPU's kvm_run failed: {errname(-self.run_addr)}")
        self.run = U.kvm_run.from_address(self.run_addr)
        self.sregs = U.kvm_sregs()
        _ioctl(self.vcpu, U.KVM_GET_SREGS, self.sregs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- memslots and the file -----------------------------------------------------------

    def _set_slot(self, slot: int, gpa: int, size: int, hva: int, gmem: int = -1) -> int:
        region = U.kvm_userspace_memory_region2(
            slot=slot, flags=U.KVM_MEM_GUEST_MEMFD if gmem >= 0 else 0, guest_phys_addr=gpa,
            memory_size=size, userspace_addr=hva, guest_memfd_offset=0, guest_memfd=max(gmem, 0))
        return _ioctl(self.vm, U.KVM_SET_USER_MEMORY_REGION2, region)

    def _drop_gmem(self) -> None:
        """Delete memslot 0 and let the old file go (its pins, windows and mappings)."""
        if self.gmem < 0:
            return
        self._set_slot(GMEM_SLOT, 0, 0, 0, self.gmem)  # memory_size 0 deletes the slot
        for rings in self.pins.values():
            for ring in rings:
                os.close(ring)
        self.pins.clear()
        for addr in self.windows.values():
            _munmap(addr, PAGE_SIZE)
        self.windows.clear()
        if self.slot_hva[1]:
            _munmap(*self.slot_hva)
        self.slot_hva = (0, 0)
        os.close(self.gmem)
        self.gmem, self.gmem_flags, self.gmem_size = -1, 0, 0

    def create_gmem(self, size: int, flags: int, userspace_addr: str = "file") -> dict:
        """KVM_CREATE_GUEST_MEMFD, then bind the file at gpa 0 (replacing an older one)."""
        args = U.kvm_create_guest_memfd(size=size, flags=flags)
        fd = _ioctl(self.vm, U.KVM_CREATE_GUEST_MEMFD, args)
        if fd < 0:
            return {"ret": errname(-fd)}
        self._drop_gmem()
        self.gmem, self.gmem_flags, self.gmem_size = fd, flags, size
        if size > CODE_GPA and self.code_slot:
            self._set_slot(CODE_SLOT, CODE_GPA, 0, self.code)  # the file would overlap the code
            self.code_slot = False
        mmap_ok = flags & U.GUEST_MEMFD_FLAG_MMAP and userspace_addr == "file"
        hva = _mmap(fd, size) if mmap_ok else _mmap(-1, size, shared=False)
        if hva < 0:
            raise Unsupported(f"created, but no userspace_addr of {size} bytes to bind it with: "
                              f"mmap {errname(-hva)}")
        self.slot_hva = (hva, size)
        r = self._set_slot(GMEM_SLOT, 0, size, hva, fd)
        if r < 0:
            raise Unsupported(f"created, but KVM_SET_USER_MEMORY_REGION2 refuses to bind it at gpa 0: "
                              f"{errname(-r)}")
        return {"ret": 0}

    def _window(self, page: int) -> int:
        """A one-page MAP_SHARED mapping of the file at that page: the address, or -errno."""
        addr = self.windows.get(page)
        if addr is None:
            if (page + 1) * PAGE_SIZE > MAX_OFF_T:
                raise Unsupported("an offset past the largest one mmap takes (off_t)")
            addr = _mmap(self.gmem, PAGE_SIZE, page * PAGE_SIZE)
            if addr < 0:
                return addr
            self.windows[page] = addr
        return addr

    # --- host -----------------------------------------------------------------------------

    def host_access(self, offset: int, write: bool, value: int) -> dict:
        """A forked child touches the page at offset through a MAP_SHARED mmap."""
        addr = self._window(offset // PAGE_SIZE)
        if addr < 0:
            return {"ret": errname(-addr)}
        pid = os.fork()
        if pid == 0:  # the child: one access, then _exit (no Python clean-up in a fork)
            try:
                faulthandler.disable()
                signal.signal(signal.SIGBUS, signal.SIG_DFL)
                signal.signal(signal.SIGSEGV, signal.SIG_DFL)
                if write:
                    ctypes.memset(addr, value, PAGE_SIZE)
                    os._exit(0)
                os._exit(ctypes.c_uint8.from_address(addr + offset % PAGE_SIZE).value)
            finally:
                os.abort()  # never reached unless the access raised: SIGABRT, not a value
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            return {"signal": signal.Signals(os.WTERMSIG(status)).name}
        code = os.WEXITSTATUS(status)
        return {"ok": True} if write else {"ok": True, "value": code}

    def pin(self, offset: int, size: int) -> dict:
        """Long-term pin every page of [offset, offset + size): io_uring fixed buffers."""
        if size == 0:
            raise Unsupported("a zero-length pin takes no reference: io_uring refuses it with EFAULT, "
                              "vmsplice takes nothing; the model's EINVAL is its own convention")
        first, last = offset // PAGE_SIZE, (offset + size - 1) // PAGE_SIZE
        if last - first >= 4096:
            raise Unsupported("a pin of more than 4096 pages (one io_uring per page)")
        taken: list[tuple[int, int]] = []

        def release():  # all or nothing
            for p, ring in taken:
                self.pins[p].remove(ring)
                os.close(ring)
        try:
            for page in range(first, last + 1):
                addr = self._window(page)
                err = -addr if addr < 0 else 0
                if not err:
                    ring, err = _pin_page(addr)
                if err:
                    release()
                    return {"ret": errname(err)}
                self.pins.setdefault(page, []).append(ring)
                taken.append((page, ring))
        except Unsupported:
            release()
            raise
        return {"ret": 0}

    def unpin(self, offset: int, size: int) -> dict:
        """Drop one reference on every page of the range that this run pinned."""
        if size == 0:
            raise Unsupported("a zero-length unpin drops nothing; the model's EINVAL is its own convention")
        first, last = offset // PAGE_SIZE, (offset + size - 1) // PAGE_SIZE
        if self.gmem < 0 or (last + 1) * PAGE_SIZE > self.gmem_size:
            raise Unsupported("an unpin reaching past the end of the guest_memfd: no pin of this run is "
                              "there and no kernel call answers it (the model's EINVAL is its convention)")
        pages = [p for p in range(first, last + 1) if self.pins.get(p)]
        if not pages:
            raise Unsupported("no pin of this run covers the range: there is no kernel call to make")
        result = 0
        for p in pages:
            ring = self.pins[p].pop()
            r = _c().syscall(U.SYS_io_uring_register, ctypes.c_long(ring),
                             ctypes.c_long(U.IORING_UNREGISTER_BUFFERS), None, ctypes.c_long(0))
            if r < 0 and not result:
                result = ctypes.get_errno()
            os.close(ring)
        return {"ret": errname(result) if result else 0}

    def punch_hole(self, offset: int, size: int) -> dict:
        """fallocate(PUNCH_HOLE | KEEP_SIZE): offset and len are loff_t (signed)."""
        for _ in range(EINTR_RETRIES):   # a signal's EINTR is not the kernel's answer
            r = _c().fallocate(self.gmem, U.FALLOC_FL_PUNCH_HOLE | U.FALLOC_FL_KEEP_SIZE,
                               _signed(offset), _signed(size))
            if r >= 0 or ctypes.get_errno() != errno.EINTR:
                break
        return {"ret": errname(ctypes.get_errno()) if r < 0 else 0}

    # --- guest ----------------------------------------------------------------------------

    def guest_access(self, offset: int, write: bool, value: int) -> dict:
        """The vCPU reads the byte at gpa offset, or fills its page with value."""
        if not self.code_slot:
            raise Unsupported("the guest_memfd covers the runner's guest code (one page below 4 GiB)")
        if offset >= CODE_GPA:
            raise Unsupported("a gpa at or above the runner's guest code (one page below 4 GiB)")
        base = offset - offset % PAGE_SIZE
        s = U.kvm_sregs.from_buffer_copy(self.sregs)  # the reset state: real mode
        s.cs.base, s.cs.selector = CODE_GPA, 0
        for seg in (s.ds, s.es):
            seg.base, seg.selector, seg.limit = base, 0, 0xFFFF
        r = _ioctl(self.vcpu, U.KVM_SET_SREGS, s)
        if r < 0:
            return {"ret": errname(-r)}
        regs = U.kvm_regs(rflags=2, rax=value, rbx=offset % PAGE_SIZE, rdi=0, rcx=PAGE_SIZE,
                          rip=GUEST_WRITE_RIP if write else GUEST_READ_RIP)
        r = _ioctl(self.vcpu, U.KVM_SET_REGS, regs)
        if r < 0:
            return {"ret": errname(-r)}
        while True:
            r = _ioctl(self.vcpu, U.KVM_RUN)
            if r == -errno.EINTR:
                continue
            break
        reason = self.run.exit_reason
        if r < 0:
            if reason == U.KVM_EXIT_MEMORY_FAULT:
                return {"exit": "MEMORY_FAULT"}
            return {"ret": errname(-r)}
        if reason == U.KVM_EXIT_HLT:
            if write:
                return {"ok": True}
            out = U.kvm_regs()
            _ioctl(self.vcpu, U.KVM_GET_REGS, out)
            return {"ok": True, "value": out.rax & 0xFF}
        if reason in (U.KVM_EXIT_MMIO, U.KVM_EXIT_IO):
            # Complete the access KVM handed to userspace (reads see zeros) and stop at
            # once: immediate_exit makes the next KVM_RUN return EINTR after completing it.
            self.run.immediate_exit = 1
            _ioctl(self.vcpu, U.KVM_RUN)
            self.run.immediate_exit = 0
        return {"exit": U.EXIT_REASONS.get(reason, str(reason))}

    # --- trace events -----------------------------------------------------------------------

    def do(self, ev: dict) -> dict:
        """Run one normalized trace event (gmemlab.traces.format) and return its outcome."""
        op = ev["op"]
        if op == "create_gmem":
            flags = 0
            for name in ev.get("flags", ()):
                flags |= U.GMEM_FLAG_BITS[name]
            return self.create_gmem(ev["size"], flags)
        if op in ("host_read", "host_write"):
            return self.host_access(ev["offset"], op == "host_write", ev.get("value", 0))
        if op == "punch_hole":
            return self.punch_hole(ev["offset"], ev["size"])
        if op == "pin":
            return self.pin(ev["offset"], ev["size"])
        if op == "unpin":
            return self.unpin(ev["offset"], ev["size"])
        if op in ("guest_read", "guest_write"):
            self._guest_expressible(ev)
            return self.guest_access(ev["offset"], op == "guest_write", ev.get("value", 0))
        raise Unsupported(NOT_ON_DEFAULT_VM.get(op, f"no kernel counterpart for {op}"))

    def _guest_expressible(self, ev: dict) -> None:
        if ev["private"]:
            raise Unsupported("a private guest access: a default VM has no private view (no C-bit or "
                              "shared bit; KVM_X86_DEFAULT_VM has no private memory)")
        if self.gmem < 0:
            raise Unsupported("no guest_memfd is bound yet: the guest would reach no memslot "
                              "(the model answers EBADF by its convention)")
        if not self.gmem_flags & U.GUEST_MEMFD_FLAG_MMAP:
            raise Unsupported("the guest does not reach a guest_memfd created without MMAP: its memslot is "
                              "not guest_memfd-only (kvm_gmem_bind sets KVM_MEMSLOT_GMEM_ONLY only with "
                              "GUEST_MEMFD_FLAG_MMAP) and a default VM has no private memory, so the access "
                              "goes to userspace_addr (virt/kvm/guest_memfd.c, arch/x86/kvm/mmu/mmu.c, 6.18)")
        if not self.gmem_flags & U.GUEST_MEMFD_FLAG_INIT_SHARED and not self.probe \
                and self.kvm.vcpu_memory_path == "userspace_addr":
            raise Unsupported("this kernel's vCPU reaches guest memory through the memslot's userspace_addr "
                              "(an emulated vCPU, e.g. kvm_pvm), which a guest_memfd without INIT_SHARED "
                              "refuses (kvm_gmem_fault_user_mapping: SIGBUS, so KVM exits with MMIO); a "
                              "hardware vCPU would fault through kvm_gmem_get_pfn instead")

    def close(self):
        self._drop_gmem()
        if getattr(self, "run_addr", -1) > 0:
            _munmap(self.run_addr, self.kvm.vcpu_mmap_size)
            self.run_addr = -1
        if getattr(self, "vcpu", -1) >= 0:
            os.close(self.vcpu)
            self.vcpu = -1
        if self.code > 0:
            _munmap(self.code, PAGE_SIZE)
            self.code = -1
        if self.vm >= 0:
            os.close(self.vm)
            self.vm = -1


def _pin_page(addr: int) -> tuple[int, int]:
    """Register one page as an io_uring fixed buffer: (ring fd, 0), or (-1, errno) when
    the registration (GUP with FOLL_LONGTERM) refuses the page. An io_uring this process
    cannot have, or cannot charge the page to (RLIMIT_MEMLOCK), says nothing about the
    page: Unsupported."""
    lib = _c()
    params = U.io_uring_params()
    ring = lib.syscall(ctypes.c_long(U.SYS_io_uring_setup), ctypes.c_long(1), ctypes.byref(params))
    if ring < 0:
        raise Unsupported(f"no io_uring for the pin: io_uring_setup {errname(ctypes.get_errno())} "
                          f"(kernel.io_uring_disabled, or out of file descriptors)")
    iov = U.iovec(addr, PAGE_SIZE)
    r = lib.syscall(ctypes.c_long(U.SYS_io_uring_register), ctypes.c_long(ring),
                    ctypes.c_long(U.IORING_REGISTER_BUFFERS), ctypes.byref(iov), ctypes.c_long(1))
    if r < 0:
        err = ctypes.get_errno()
        os.close(ring)
        if err in (errno.ENOMEM, errno.EPERM):
            raise Unsupported(f"io_uring could not take the pin: {errname(err)} (RLIMIT_MEMLOCK without "
                              f"CAP_IPC_LOCK?), which says nothing about the guest_memfd")
        return -1, err
    return ring, 0


# Why the other ops end a run on a default VM of Linux 6.18.
NOT_ON_DEFAULT_VM = {
    "set_attributes": "KVM_SET_MEMORY_ATTRIBUTES2 (in-place conversion) does not exist in this kernel: the "
                      "guest_memfd has no ioctls in 6.18 and a default VM has no per-VM memory attributes "
                      "(KVM_CAP_MEMORY_ATTRIBUTES = 0)",
    "populate": "KVM_SEV_SNP_LAUNCH_UPDATE / KVM_TDX_INIT_MEM_REGION are launch ioctls of SNP and TDX VMs; "
                "a default VM has none",
    "finalize": "KVM_SEV_SNP_LAUNCH_FINISH / KVM_TDX_FINALIZE_VM are launch ioctls of SNP and TDX VMs; "
                "a default VM has none",
    "guest_accept": "PVALIDATE / TDG.MEM.PAGE.ACCEPT need a trusted entity; a default VM has none",
    "replace_memslot": "KVM_SET_USER_MEMORY_REGION2 exists, but kvm-run binds its one memslot once and "
                       "does not move it (not implemented)",
    "map_gpa_range": "KVM_HC_MAP_GPA_RANGE reaches userspace only with KVM_CAP_EXIT_HYPERCALL, and its "
                     "answer would be a conversion this kernel does not have",
}


# --- running a trace --------------------------------------------------------------------

@dataclass
class Recording:
    """What a run did: the events run, each with the kernel's outcome as "expect"; where
    it stopped and why; where the trace's own "expect" disagreed with the kernel."""

    events: list = field(default_factory=list)
    stopped: dict | None = None
    mismatches: list = field(default_factory=list)


def run_events(kvm: Kvm, events, *, machine: Machine | None = None) -> Recording:
    """Run normalized trace events (gmemlab.traces.format) on a fresh default VM (or on
    ``machine``), until the first event the kernel cannot express."""
    from gmemlab.traces.replay import CHECKED, mismatch, outcome_json

    rec = Recording()
    own = machine is None
    m = Machine(kvm) if own else machine
    try:
        for ev in events:
            try:
                if "thread" in ev:
                    # A call in steps (gmemlab.model.threads): one ioctl cannot be stopped
                    # between its steps, nor two threads' steps ordered, from here.
                    raise Unsupported("a thread's call in steps (interleavings) is not one ioctl the "
                                      "kernel can be stopped inside: gmemlab kvm-run runs calls whole")
                outcome = m.do(ev)
            except Unsupported as e:
                rec.stopped = {"line": ev.get("line"), "op": ev["op"], "why": str(e)}
                break
            out = {k: v for k, v in ev.items() if k != "expect"}
            out["expect"] = outcome
            expected = ev.get("expect")
            if expected is not None and mismatch(expected, outcome):
                rec.mismatches.append({"line": ev.get("line"), "op": ev["op"],
                                       "expected": outcome_json({k: v for k, v in expected.items() if k in CHECKED}),
                                       "kernel": outcome_json(outcome)})
                extra = dict(out.get("extra", {}))
                extra["trace_expect"] = outcome_json(expected)
                out["extra"] = extra
            rec.events.append(out)
    finally:
        if own:
            m.close()
    return rec


def recorded_header(kvm: Kvm, header: dict, source_name: str, rec: Recording) -> dict:
    """The header of a recording: platform "default", source "recorded", the kernel."""
    h = {k: v for k, v in header.items() if k not in ("line", "format")}
    h["trace_platform"] = header["platform"]
    h["platform"] = "default"
    h["source"] = "recorded"
    what = f"run on Linux {kvm.release} (KVM default VM) by gmemlab kvm-run from {source_name}"
    h["description"] = what + (": " + header["description"] if header.get("description") else "")
    h.update(kvm.header_fields())
    if rec.stopped:
        h["stopped"] = rec.stopped
    return h


def recorded_text(header: dict, rec: Recording) -> str:
    """The recording as gmemlab-trace/1 text; a comment line says where the run stopped."""
    from gmemlab.traces.format import dumps

    text = dumps(header, rec.events)
    if rec.stopped:
        text += f"# stopped at line {rec.stopped['line']} ({rec.stopped['op']}): {rec.stopped['why']}\n"
    return text
