"""The slice of the KVM uAPI gmemlab's kernel runner uses, written out for ctypes.

Every number and layout here is from include/uapi/linux/kvm.h (and, for io_uring,
include/uapi/linux/io_uring.h; for the system call numbers,
arch/x86/entry/syscalls/syscall_64.tbl) of Linux 6.18, x86-64. The runner checks what it
depends on at run time (KVM_GET_API_VERSION, the capabilities, the size of struct kvm_run),
and tests/test_kvm.py probes the numbers against the running kernel.

>>> hex(KVM_CREATE_GUEST_MEMFD), hex(KVM_SET_USER_MEMORY_REGION2)
('0xc040aed4', '0x40a0ae49')
>>> ctypes.sizeof(kvm_sregs), ctypes.sizeof(kvm_regs), ctypes.sizeof(kvm_userspace_memory_region2)
(312, 144, 160)
"""

from __future__ import annotations

import ctypes

# --- ioctl number encoding: include/uapi/asm-generic/ioctl.h ---------------------------
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _ioc(direction: int, kind: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (kind << 8) | nr


def _io(kind: int, nr: int) -> int:
    return _ioc(_IOC_NONE, kind, nr, 0)


def _ior(kind: int, nr: int, struct) -> int:
    return _ioc(_IOC_READ, kind, nr, ctypes.sizeof(struct))


def _iow(kind: int, nr: int, struct) -> int:
    return _ioc(_IOC_WRITE, kind, nr, ctypes.sizeof(struct))


def _iowr(kind: int, nr: int, struct) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, kind, nr, ctypes.sizeof(struct))


KVMIO = 0xAE  # kvm.h: #define KVMIO 0xAE

# --- structures (kvm.h) ---------------------------------------------------------------


class kvm_userspace_memory_region2(ctypes.Structure):
    """kvm.h: struct kvm_userspace_memory_region2 (KVM_SET_USER_MEMORY_REGION2)."""

    _fields_ = [("slot", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("guest_phys_addr", ctypes.c_uint64), ("memory_size", ctypes.c_uint64),
                ("userspace_addr", ctypes.c_uint64), ("guest_memfd_offset", ctypes.c_uint64),
                ("guest_memfd", ctypes.c_uint32), ("pad1", ctypes.c_uint32),
                ("pad2", ctypes.c_uint64 * 14)]


class kvm_create_guest_memfd(ctypes.Structure):
    """kvm.h: struct kvm_create_guest_memfd (KVM_CREATE_GUEST_MEMFD)."""

    _fields_ = [("size", ctypes.c_uint64), ("flags", ctypes.c_uint64),
                ("reserved", ctypes.c_uint64 * 6)]


class kvm_regs(ctypes.Structure):
    """asm/kvm.h (x86): struct kvm_regs."""

    _fields_ = [(name, ctypes.c_uint64) for name in
                ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
                 "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")]


class kvm_segment(ctypes.Structure):
    """asm/kvm.h (x86): struct kvm_segment."""

    _fields_ = [("base", ctypes.c_uint64), ("limit", ctypes.c_uint32), ("selector", ctypes.c_uint16),
                ("type", ctypes.c_uint8), ("present", ctypes.c_uint8), ("dpl", ctypes.c_uint8),
                ("db", ctypes.c_uint8), ("s", ctypes.c_uint8), ("l", ctypes.c_uint8),
                ("g", ctypes.c_uint8), ("avl", ctypes.c_uint8), ("unusable", ctypes.c_uint8),
                ("padding", ctypes.c_uint8)]


class kvm_dtable(ctypes.Structure):
    """asm/kvm.h (x86): struct kvm_dtable."""

    _fields_ = [("base", ctypes.c_uint64), ("limit", ctypes.c_uint16), ("padding", ctypes.c_uint16 * 3)]


KVM_NR_INTERRUPTS = 256  # asm/kvm.h (x86)


class kvm_sregs(ctypes.Structure):
    """asm/kvm.h (x86): struct kvm_sregs."""

    _fields_ = [("cs", kvm_segment), ("ds", kvm_segment), ("es", kvm_segment), ("fs", kvm_segment),
                ("gs", kvm_segment), ("ss", kvm_segment), ("tr", kvm_segment), ("ldt", kvm_segment),
                ("gdt", kvm_dtable), ("idt", kvm_dtable),
                ("cr0", ctypes.c_uint64), ("cr2", ctypes.c_uint64), ("cr3", ctypes.c_uint64),
                ("cr4", ctypes.c_uint64), ("cr8", ctypes.c_uint64), ("efer", ctypes.c_uint64),
                ("apic_base", ctypes.c_uint64),
                ("interrupt_bitmap", ctypes.c_uint64 * ((KVM_NR_INTERRUPTS + 63) // 64))]


class kvm_run_io(ctypes.Structure):
    """kvm.h: struct kvm_run, the KVM_EXIT_IO member of its exit union."""

    _fields_ = [("direction", ctypes.c_uint8), ("size", ctypes.c_uint8), ("port", ctypes.c_uint16),
                ("count", ctypes.c_uint32), ("data_offset", ctypes.c_uint64)]


class kvm_run_mmio(ctypes.Structure):
    """kvm.h: struct kvm_run, the KVM_EXIT_MMIO member."""

    _fields_ = [("phys_addr", ctypes.c_uint64), ("data", ctypes.c_uint8 * 8),
                ("len", ctypes.c_uint32), ("is_write", ctypes.c_uint8)]


class kvm_run_memory_fault(ctypes.Structure):
    """kvm.h: struct kvm_run, the KVM_EXIT_MEMORY_FAULT member."""

    _fields_ = [("flags", ctypes.c_uint64), ("gpa", ctypes.c_uint64), ("size", ctypes.c_uint64)]


class kvm_run_exit(ctypes.Union):
    _fields_ = [("io", kvm_run_io), ("mmio", kvm_run_mmio), ("memory_fault", kvm_run_memory_fault),
                ("padding", ctypes.c_char * 256)]


class kvm_run(ctypes.Structure):
    """kvm.h: the head of struct kvm_run (the vCPU's mmap), up to its exit union."""

    _fields_ = [("request_interrupt_window", ctypes.c_uint8), ("immediate_exit", ctypes.c_uint8),
                ("padding1", ctypes.c_uint8 * 6), ("exit_reason", ctypes.c_uint32),
                ("ready_for_interrupt_injection", ctypes.c_uint8), ("if_flag", ctypes.c_uint8),
                ("flags", ctypes.c_uint16), ("cr8", ctypes.c_uint64), ("apic_base", ctypes.c_uint64),
                ("exit", kvm_run_exit)]


# --- ioctls (kvm.h) ---------------------------------------------------------------------
# /dev/kvm
KVM_GET_API_VERSION = _io(KVMIO, 0x00)     # kvm.h: _IO(KVMIO, 0x00)
KVM_CREATE_VM = _io(KVMIO, 0x01)           # kvm.h: _IO(KVMIO, 0x01), argument: the VM type
KVM_CHECK_EXTENSION = _io(KVMIO, 0x03)     # kvm.h: _IO(KVMIO, 0x03); also a VM ioctl
KVM_GET_VCPU_MMAP_SIZE = _io(KVMIO, 0x04)  # kvm.h: _IO(KVMIO, 0x04)
# VM
KVM_CREATE_VCPU = _io(KVMIO, 0x41)         # kvm.h: _IO(KVMIO, 0x41)
KVM_SET_USER_MEMORY_REGION2 = _iow(KVMIO, 0x49, kvm_userspace_memory_region2)  # kvm.h: _IOW(KVMIO, 0x49, ...)
KVM_CREATE_GUEST_MEMFD = _iowr(KVMIO, 0xd4, kvm_create_guest_memfd)            # kvm.h: _IOWR(KVMIO, 0xd4, ...)
# vCPU
KVM_RUN = _io(KVMIO, 0x80)                 # kvm.h: _IO(KVMIO, 0x80)
KVM_GET_REGS = _ior(KVMIO, 0x81, kvm_regs)     # kvm.h: _IOR(KVMIO, 0x81, struct kvm_regs)
KVM_SET_REGS = _iow(KVMIO, 0x82, kvm_regs)     # kvm.h: _IOW(KVMIO, 0x82, struct kvm_regs)
KVM_GET_SREGS = _ior(KVMIO, 0x83, kvm_sregs)   # kvm.h: _IOR(KVMIO, 0x83, struct kvm_sregs)
KVM_SET_SREGS = _iow(KVMIO, 0x84, kvm_sregs)   # kvm.h: _IOW(KVMIO, 0x84, struct kvm_sregs)

KVM_API_VERSION = 12  # kvm.h: #define KVM_API_VERSION 12

# --- capabilities (kvm.h: KVM_CAP_*) -------------------------------------------------------
KVM_CAP_USER_MEMORY2 = 231
KVM_CAP_MEMORY_ATTRIBUTES = 233
KVM_CAP_GUEST_MEMFD = 234
KVM_CAP_VM_TYPES = 235
KVM_CAP_GUEST_MEMFD_FLAGS = 244  # 6.18: KVM_CAP_GUEST_MEMFD_MMAP renamed; returns the valid flags

CAPABILITIES = {"USER_MEMORY2": KVM_CAP_USER_MEMORY2, "MEMORY_ATTRIBUTES": KVM_CAP_MEMORY_ATTRIBUTES,
                "GUEST_MEMFD": KVM_CAP_GUEST_MEMFD, "VM_TYPES": KVM_CAP_VM_TYPES,
                "GUEST_MEMFD_FLAGS": KVM_CAP_GUEST_MEMFD_FLAGS}

KVM_X86_DEFAULT_VM = 0       # asm/kvm.h (x86): the VM type KVM_CREATE_VM takes
KVM_X86_SW_PROTECTED_VM = 1  # asm/kvm.h (x86)

# --- flags ---------------------------------------------------------------------------------
KVM_MEM_GUEST_MEMFD = 1 << 2            # kvm.h: memslot flag
GUEST_MEMFD_FLAG_MMAP = 1 << 0          # kvm.h (6.18)
GUEST_MEMFD_FLAG_INIT_SHARED = 1 << 1   # kvm.h (6.18)
# The trace format's names for KVM_CREATE_GUEST_MEMFD's flags. NO_DIRECT_MAP is bit 2 in
# the series that adds it ("guest_memfd: Add NO_DIRECT_MAP flag"); 6.18 does not know it.
GMEM_FLAG_BITS = {"MMAP": GUEST_MEMFD_FLAG_MMAP, "INIT_SHARED": GUEST_MEMFD_FLAG_INIT_SHARED,
                  "NO_DIRECT_MAP": 1 << 2}

# --- exit reasons (kvm.h: KVM_EXIT_*) -----------------------------------------------------
EXIT_REASONS = {0: "UNKNOWN", 1: "EXCEPTION", 2: "IO", 3: "HYPERCALL", 4: "DEBUG", 5: "HLT",
                6: "MMIO", 7: "IRQ_WINDOW_OPEN", 8: "SHUTDOWN", 9: "FAIL_ENTRY", 10: "INTR",
                17: "INTERNAL_ERROR", 24: "SYSTEM_EVENT", 39: "MEMORY_FAULT"}
KVM_EXIT_IO = 2
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6
KVM_EXIT_MEMORY_FAULT = 39

# --- the rest of the system (x86-64) ------------------------------------------------------
FALLOC_FL_KEEP_SIZE = 0x01   # include/uapi/linux/falloc.h
FALLOC_FL_PUNCH_HOLE = 0x02  # include/uapi/linux/falloc.h
PROT_READ, PROT_WRITE = 0x1, 0x2   # include/uapi/asm-generic/mman-common.h
MAP_SHARED = 0x01                  # include/uapi/linux/mman.h
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20
SYS_io_uring_setup = 425     # arch/x86/entry/syscalls/syscall_64.tbl
SYS_io_uring_register = 427  # arch/x86/entry/syscalls/syscall_64.tbl
IORING_REGISTER_BUFFERS = 0    # include/uapi/linux/io_uring.h
IORING_UNREGISTER_BUFFERS = 1  # include/uapi/linux/io_uring.h


class io_uring_params(ctypes.Structure):
    """include/uapi/linux/io_uring.h: struct io_uring_params (120 bytes; the ring offsets
    are kept opaque: the runner never maps the rings, it only registers buffers)."""

    _fields_ = [("sq_entries", ctypes.c_uint32), ("cq_entries", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("sq_thread_cpu", ctypes.c_uint32),
                ("sq_thread_idle", ctypes.c_uint32), ("features", ctypes.c_uint32),
                ("wq_fd", ctypes.c_uint32), ("resv", ctypes.c_uint32 * 3),
                ("sq_off", ctypes.c_uint8 * 40), ("cq_off", ctypes.c_uint8 * 40)]


class iovec(ctypes.Structure):
    """include/uapi/linux/uio.h: struct iovec."""

    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]
