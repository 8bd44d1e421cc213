"""What each platform's trusted entity does to a page.

sw_protected (KVM_X86_SW_PROTECTED_VM) has no trusted entity: KVM's attribute is the only
meaning of "private". SEV-SNP's TE is the RMP (plus the PSP firmware at launch), TDX's
is the TDX module's S-EPT. The hooks mirror where the kernel calls into the platform:
post_populate (kvm_gmem_populate's callback), prepare (the guest fault path,
kvm_arch_gmem_prepare), invalidate (conversion to shared and freeing,
kvm_arch_gmem_invalidate / S-EPT removal), and the guest's own validate/accept.
"""

from __future__ import annotations

from gmemlab.model.state import GARBAGE, TE_NONE, TE_PENDING, TE_VALID, ZERO, Page


class Platform:
    """sw_protected: no trusted entity, so every hook leaves the page as it is."""

    name = "sw_protected"
    source = ("KVM_X86_SW_PROTECTED_VM (no trusted entity); selftests guest_memfd_test.c, "
              "x86/guest_memfd_conversions_test.c")
    has_te = False
    populate_ioctl = None           # no launch ioctls: KVM_MEMORY_ENCRYPT_OP is ENOTTY
    conversion_ioctl = True         # KVM_SET_MEMORY_ATTRIBUTES2 exists (the series); see Default
    guest_exception = None          # what the guest gets touching a page it has not accepted
    # v5 content modes (RFC v5 "KVM: guest_memfd: Add support for content modes"):
    # sw_protected supports ZERO (to shared) and PRESERVE (both ways).
    v5_modes = {("ZERO", False), ("PRESERVE", False), ("PRESERVE", True)}

    def supports_mode(self, mode: str, to_private: bool, finalized: bool) -> bool:
        return (mode, to_private) in self.v5_modes

    def post_populate(self, page: Page, src_value: int | None) -> tuple[Page, str | None]:
        raise AssertionError("sw_protected has no populate")  # the step function refuses earlier

    def populate_ret(self, err: str | None, done: int) -> int | str:
        raise AssertionError("sw_protected has no populate")

    def prepare(self, page: Page) -> Page:
        return page

    def invalidate(self, page: Page) -> Page:
        return page

    def accept(self, page: Page) -> Page:
        return page

    def host_touch_te_private(self, page: Page, write: bool) -> tuple[Page, dict]:
        raise AssertionError("sw_protected pages are never TE-private")


class TrustedPlatform(Platform):
    """What SNP and TDX share; the subclasses set the differences as data."""

    has_te = True
    readd_errno = "EIO"          # post_populate on a page the TE already holds
    content_after_removal = GARBAGE  # what the host sees once the TE lets the page go
    accept_zeroes = False        # whether the guest's validate/accept clears the page
    v5_modes = {("ZERO", False), ("PRESERVE", True)}  # v5: ZERO to shared; PRESERVE to private, before finalize

    def supports_mode(self, mode, to_private, finalized):
        if mode == "PRESERVE" and finalized:
            return False
        return (mode, to_private) in self.v5_modes

    def post_populate(self, page, src_value):
        if page.te != TE_NONE:
            return page, self.readd_errno
        content = page.content if src_value is None else src_value
        return page._replace(content=content, uptodate=True, te=TE_VALID, measured=True), None

    def prepare(self, page):
        # The first private guest fault hands the page to the TE, not yet usable by the
        # guest: SNP sev_gmem_prepare (rmp_make_private: assigned, not validated; the guest
        # sees host-written bytes through its own key), TDX TDH.MEM.PAGE.AUG (PENDING until
        # TDG.MEM.PAGE.ACCEPT).
        if page.te != TE_NONE:
            return page
        return page._replace(te=TE_PENDING, content=GARBAGE)

    def invalidate(self, page):
        # Conversion to shared / freeing: the TE lets the page go; a page it never held
        # keeps its plaintext.
        if page.te == TE_NONE:
            return page
        return page._replace(te=TE_NONE, content=self.content_after_removal)

    def accept(self, page):
        if page.te == TE_VALID:
            return page  # SNP PVALIDATE: FAIL_UNCHANGED; TDX: already accepted
        return page._replace(te=TE_VALID, content=ZERO if self.accept_zeroes else page.content)


class Snp(TrustedPlatform):
    name = "snp"
    source = "AMD SEV-SNP: RMP, KVM_SEV_SNP_LAUNCH_UPDATE / LAUNCH_FINISH (arch/x86/kvm/svm/sev.c)"
    populate_ioctl = "KVM_SEV_SNP_LAUNCH_UPDATE"
    guest_exception = "#VC"  # access to a page not PVALIDATEd: #VC (VMM communication exception)
    # sev_gmem_post_populate: rmp_make_private + SNP_LAUNCH_UPDATE, which encrypts the
    # page in place with the guest key and extends the launch digest. A page whose RMP
    # entry is already assigned is refused with EEXIST before rmp_make_private
    # (arch/x86/kvm/svm/sev.c); snp_launch_update reports it as EIO when it is first.
    readd_errno = "EEXIST"
    # sev_gmem_invalidate: the RMP entry goes back to hypervisor-owned; the host now sees
    # the guest's ciphertext.
    content_after_removal = GARBAGE
    accept_zeroes = False  # PVALIDATE does not change contents

    def populate_ret(self, err, done):
        # snp_launch_update: a negative count from kvm_gmem_populate becomes -EIO whatever
        # its cause; with some pages done it returns 0 and advances gfn_start/len (uaddr
        # only when non-NULL) so that userspace can resume (docs/domain.md, Populate).
        if err is not None and done == 0:
            return "EIO"
        return 0

    def host_touch_te_private(self, page, write):
        # A user access to an RMP-assigned page raises an RMP #PF. Assumption
        # A-snp-rmp-fault: the offender gets SIGBUS, as Michael Roth's proposed handling
        # of user RMP faults would do (mainline's handling is not settled; a kernel
        # access oopses).
        return page, {"signal": "SIGBUS"}


class Tdx(TrustedPlatform):
    name = "tdx"
    source = "Intel TDX: S-EPT, KVM_TDX_INIT_MEM_REGION / KVM_TDX_FINALIZE_VM (arch/x86/kvm/vmx/tdx.c)"
    populate_ioctl = "KVM_TDX_INIT_MEM_REGION"
    guest_exception = "#VE"  # access to a PENDING page: EPT violation reflected as #VE
    # tdx_gmem_post_populate: TDH.MEM.PAGE.ADD (in place when the source is NULL, "KVM:
    # TDX: Make source page optional..." in v8; a copy by the TDX module otherwise) and
    # TDH.MR.EXTEND. Adding a page the S-EPT already maps: any result of
    # kvm_tdp_mmu_map_private_pfn other than "fixed" is EIO (kernels before 6.20 said
    # EEXIST from the generic up-to-date check).
    readd_errno = "EIO"
    # TDH.MEM.PAGE.REMOVE. Assumption A-tdx-clear: the page reads as zero afterwards
    # (mainline clears explicitly only on parts with the partial-write erratum).
    content_after_removal = ZERO
    accept_zeroes = True  # TDG.MEM.PAGE.ACCEPT initializes the page to zero (TDX module ABI)

    def populate_ret(self, err, done):
        # KVM_TDX_INIT_MEM_REGION works a page at a time and returns the failing page's
        # errno, with gpa/nr_pages advanced past the pages done (docs/domain.md, Populate).
        return err if err is not None else 0

    def host_touch_te_private(self, page, write):
        # A host-key read of a TD-owned line returns all zeros (TDX module spec, "memory
        # integrity"); a host write is not stopped, and the TD's next read of the line
        # hits poison (Documentation/arch/x86/tdx.rst). Assumption A-tdx-host-access: no
        # partial-write erratum, so the host itself gets no machine check.
        if write:
            return page._replace(content=GARBAGE), {"ok": True}
        return page, {"ok": True, "value": ZERO}


class Default(Platform):
    """KVM's default VM (KVM_X86_DEFAULT_VM, type 0) with a guest_memfd, as the running
    kernel has it: Linux 6.18, before the in-place conversion series. No trusted entity,
    no launch ioctls, no conversion. Everything else (create, mmap, host faults, punch,
    pins, guest accesses through a guest_memfd-only memslot) is sw_protected's rule; each
    was checked on the kernel (gmemlab kvm-run, tests/test_kvm.py):

    - KVM_CREATE_GUEST_MEMFD takes MMAP and INIT_SHARED on a default VM
      (kvm_gmem_get_supported_flags; kvm_arch_supports_gmem_init_shared is true for a VM
      without private memory) and refuses any other bit, size <= 0 as a loff_t, or an
      unaligned size with EINVAL (kvm_gmem_create, virt/kvm/guest_memfd.c, 6.18).
    - mmap without MMAP: ENODEV (kvm_gmem_mmap). A host fault without INIT_SHARED, or at
      or past the end of the file: SIGBUS; otherwise the page is allocated zeroed
      (kvm_gmem_fault_user_mapping). So a file without INIT_SHARED is "private" here in
      the model's sense: no host access, no GUP (pin: EFAULT).
    - A guest access through the file's memslot: with MMAP, kvm_gmem_bind marks the
      memslot KVM_MEMSLOT_GMEM_ONLY and __kvm_mmu_faultin_pfn (arch/x86/kvm/mmu/mmu.c,
      6.18) faults shared accesses through kvm_gmem_get_pfn too, which allocates and
      zeroes a page not up to date and does not look at INIT_SHARED: a never-written
      page reads 0, and the guest can use a page the host cannot fault. The access type
      is never private (no per-VM attributes: KVM_CAP_MEMORY_ATTRIBUTES = 0), so the
      trace's private/shared view has no meaning here; the model ignores it, as on
      sw_protected. Not modelled (assumption A-default-no-mmap-guest): without MMAP the
      memslot is not guest_memfd-only and the guest reaches userspace_addr, not the file
      (kvm-run does not run such events).
    - KVM_SET_MEMORY_ATTRIBUTES2 does not exist: ENOTTY (see conversion_ioctl).
    """

    name = "default"
    source = ("KVM_X86_DEFAULT_VM with guest_memfd, Linux 6.18 (virt/kvm/guest_memfd.c, "
              "arch/x86/kvm/mmu/mmu.c); checked on the running kernel by gmemlab kvm-run")
    # Linux 6.18's guest_memfd has no ioctls at all (kvm_gmem_fops has no unlocked_ioctl,
    # virt/kvm/guest_memfd.c), so KVM_SET_MEMORY_ATTRIBUTES2 on it is ENOTTY (vfs_ioctl,
    # fs/ioctl.c); the per-VM KVM_SET_MEMORY_ATTRIBUTES is not offered to a default VM.
    conversion_ioctl = False
    v5_modes = frozenset()


PLATFORMS = {p.name: p for p in (Platform(), Snp(), Tdx(), Default())}
