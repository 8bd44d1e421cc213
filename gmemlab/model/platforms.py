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
    has_te = False
    populate_ioctl = None           # no launch ioctls: KVM_MEMORY_ENCRYPT_OP is ENOTTY
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


class Snp(Platform):
    name = "snp"
    has_te = True
    populate_ioctl = "KVM_SEV_SNP_LAUNCH_UPDATE"
    guest_exception = "#VC"  # access to a page not PVALIDATEd: #VC (VMM communication exception)
    # v5: ZERO to shared; PRESERVE only to private and only before the VM is finalized.
    v5_modes = {("ZERO", False), ("PRESERVE", True)}

    def supports_mode(self, mode, to_private, finalized):
        if mode == "PRESERVE" and finalized:
            return False
        return (mode, to_private) in self.v5_modes

    def post_populate(self, page, src_value):
        # sev_gmem_post_populate: rmp_make_private + SNP_LAUNCH_UPDATE, which encrypts
        # the page in place with the guest key and extends the launch digest. A page whose
        # RMP entry is already assigned is refused with EEXIST before rmp_make_private
        # (arch/x86/kvm/svm/sev.c); snp_launch_update reports it as EIO when it is first.
        if page.te != TE_NONE:
            return page, "EEXIST"
        content = page.content if src_value is None else src_value
        return page._replace(content=content, uptodate=True, te=TE_VALID, measured=True), None

    def populate_ret(self, err, done):
        # snp_launch_update: a negative count from kvm_gmem_populate becomes -EIO whatever
        # its cause; with some pages done it returns 0 and advances gfn_start/len (uaddr
        # only when non-NULL) so that userspace can resume (DOMAIN.md Populate).
        if err is not None and done == 0:
            return "EIO"
        return 0

    def prepare(self, page):
        # sev_gmem_prepare: rmp_make_private on the first private fault; the page is
        # assigned but not validated, and the guest sees host-written bytes through its
        # own key, i.e. not the plaintext.
        if page.te != TE_NONE:
            return page
        return page._replace(te=TE_PENDING, content=GARBAGE)

    def invalidate(self, page):
        # sev_gmem_invalidate: the RMP entry goes back to hypervisor-owned; the host now
        # sees the guest's ciphertext. A page never assigned keeps its plaintext.
        if page.te == TE_NONE:
            return page
        return page._replace(te=TE_NONE, content=GARBAGE)

    def accept(self, page):
        # PVALIDATE does not change contents. Launch-populated pages come validated.
        return page._replace(te=TE_VALID)

    def host_touch_te_private(self, page, write):
        # A user access to an RMP-assigned page raises an RMP #PF. Assumption
        # A-snp-rmp-fault: the offender gets SIGBUS, as Michael Roth's "x86/fault: Add
        # helper for dumping RMP entries"-era patch to signal user RMP faults proposed
        # (mainline's handling of user RMP faults is not settled; a kernel access oopses).
        return page, {"signal": "SIGBUS"}


class Tdx(Platform):
    name = "tdx"
    has_te = True
    populate_ioctl = "KVM_TDX_INIT_MEM_REGION"
    guest_exception = "#VE"  # access to a PENDING page: EPT violation reflected as #VE
    v5_modes = {("ZERO", False), ("PRESERVE", True)}

    supports_mode = Snp.supports_mode

    def post_populate(self, page, src_value):
        # tdx_gmem_post_populate: TDH.MEM.PAGE.ADD (in place when the source is NULL,
        # "KVM: TDX: Make source page optional..." in v8; a copy by the TDX module
        # otherwise) and TDH.MR.EXTEND. Adding a page the S-EPT already maps: any result of
        # kvm_tdp_mmu_map_private_pfn other than "fixed" is EIO (kernels before 6.20 said
        # EEXIST from the generic up-to-date check).
        if page.te != TE_NONE:
            return page, "EIO"
        content = page.content if src_value is None else src_value
        return page._replace(content=content, uptodate=True, te=TE_VALID, measured=True), None

    def populate_ret(self, err, done):
        # KVM_TDX_INIT_MEM_REGION works a page at a time and returns the failing page's
        # errno, with gpa/nr_pages advanced past the pages done (DOMAIN.md Populate).
        return err if err is not None else 0

    def prepare(self, page):
        # TDH.MEM.PAGE.AUG: the page enters the S-EPT PENDING; contents appear only after
        # the guest's TDG.MEM.PAGE.ACCEPT, which zeroes the page.
        if page.te != TE_NONE:
            return page
        return page._replace(te=TE_PENDING, content=GARBAGE)

    def invalidate(self, page):
        # TDH.MEM.PAGE.REMOVE. Modelling assumption A-tdx-clear: the page's contents are
        # treated as zero afterwards (mainline clears explicitly only on parts with the
        # partial-write erratum).
        if page.te == TE_NONE:
            return page
        return page._replace(te=TE_NONE, content=ZERO)

    def accept(self, page):
        # TDG.MEM.PAGE.ACCEPT initializes the page to zero (TDX module ABI), once.
        if page.te == TE_VALID:
            return page
        return page._replace(te=TE_VALID, content=ZERO)

    def host_touch_te_private(self, page, write):
        # A host-key read of a TD-owned line returns all zeros (TDX module spec, "memory
        # integrity"); a host write is not stopped, and the TD's next read of the line
        # hits poison (Documentation/arch/x86/tdx.rst). Assumption A-tdx-host-access: no
        # partial-write erratum, so the host itself gets no machine check.
        if write:
            return page._replace(content=GARBAGE), {"ok": True}
        return page, {"ok": True, "value": ZERO}


PLATFORMS = {p.name: p for p in (Platform(), Snp(), Tdx())}
