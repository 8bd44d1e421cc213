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
    # The launch ioctl's answers that come before kvm_gmem_populate (step.populate reads
    # them): a call without a source (None: a NULL source is populate in place), a call
    # after launch was finalized, and a second finalize.
    populate_requires_source = False
    no_source_errno: str | None = None
    finalized_populate_errno = "EINVAL"
    refinalize_errno: int | str = "EINVAL"
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

    # --- invalidation: what zapping a stage-2 mapping of a TE-held page destroys ------
    # zap_releases_te: whether invalidating (zapping) the PRIVATE stage-2 mapping of a page
    # the TE holds makes the TE let it go (te none, contents content_after_removal): TDX
    # (tdx_sept_remove_private_spte: TDH.MEM.PAGE.REMOVE, the page leaves the TD) and CCA
    # (destroying a data granule's mapping destroys its contents) -- a platform being added
    # sets it. False where the TE's state is independent of the stage-2 tables (SNP: the RMP
    # entry stays assigned when the NPT entry is zapped) or there is no TE.
    zap_releases_te = False
    # free_by_filter: the TE lets a page go on a punch only through the range's private
    # invalidation filter (CCA: kvm_realm_unmap_range_filter undelegates under
    # KVM_FILTER_PRIVATE only, and there is no free_folio hook), not in the folio's free.
    free_by_filter = False
    # arch_convert: the platform implements kvm_arch_gmem_make_shared (conversion to shared,
    # every folio of the range) and kvm_arch_gmem_make_private (guest fault)
    # (CONFIG_HAVE_KVM_ARCH_GMEM_CONVERT; a series with arch_convert_hooks calls them).
    arch_convert = False
    # What post_populate answers for a NULL source while kvm.gmem_in_place_conversion is off
    # (knob in_place_off): None where a NULL source is allowed.
    legacy_null_src_errno: str | None = None
    # The TE's view of a huge folio (knob huge_folios; gmemlab.explore.compare reports it
    # next to the folio's own survival): whether the TE's entry for a page it takes at
    # launch (post_populate) can cover a whole huge folio, and whether the entry for a
    # page it takes at a private guest fault (prepare) can. None: no TE.
    te_huge_at_launch: bool | None = None
    te_huge_at_fault: bool | None = None
    te_huge_source = ""

    def zap_private(self, page: Page) -> Page:
        """The page after its private stage-2 mapping is invalidated (kvm_mmu_unmap_gfn_range
        with KVM_FILTER_PRIVATE, and the arch's invalidate_range hook)."""
        return self.invalidate(page) if self.zap_releases_te else page

    def make_shared(self, page: Page) -> Page:
        """kvm_arch_gmem_make_shared on the page's folio (only with arch_convert)."""
        return self.invalidate(page) if self.arch_convert else page

    def host_touch_te_private(self, page: Page, write: bool) -> tuple[Page, dict]:
        raise AssertionError("sw_protected pages are never TE-private")


class TrustedPlatform(Platform):
    """What SNP and TDX share; the subclasses set the differences as data."""

    has_te = True
    # By default a TE's ownership IS the private mapping (TDX, CCA): zapping it releases the page.
    zap_releases_te = True
    readd_errno = "EIO"          # post_populate on a page the TE already holds
    content_after_removal = GARBAGE  # what the host sees once the TE lets the page go
    accept_zeroes = False        # whether the guest's validate/accept clears the page
    # A populate range that runs past the end of the guest_memfd memslot: kvm_gmem_populate
    # (virt/kvm/guest_memfd.c, mainline and the series) clamps npages to the slot that
    # holds start_gfn and returns the count done. A caller that asks one page at a time
    # (TDX, below) instead meets the next gfn with no guest_memfd slot: -EINVAL.
    populate_clamps_to_slot = False
    v5_modes = {("ZERO", False), ("PRESERVE", True)}  # v5: ZERO to shared; PRESERVE to private, before finalize

    def supports_mode(self, mode, to_private, finalized):
        if mode == "PRESERVE" and finalized:
            return False
        return (mode, to_private) in self.v5_modes

    def post_populate(self, page, src_value):
        if page.te != TE_NONE:
            return page, self.readd_errno
        content = page.content if src_value is None else src_value
        # The folio's up-to-date mark is generic code's (step.populate, per series).
        return page._replace(content=content, te=TE_VALID, measured=True), None

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
    # snp_launch_update (arch/x86/kvm/svm/sev.c, kvm-x86 / Linux 6.11+) passes the whole
    # range to kvm_gmem_populate, which clamps it to the memslot's end: 0, with gfn_start
    # and len advanced past the pages done (the rest is left for userspace to see).
    populate_clamps_to_slot = True
    # sev_gmem_post_populate: rmp_make_private + SNP_LAUNCH_UPDATE, which encrypts the
    # page in place with the guest key and extends the launch digest. A page whose RMP
    # entry is already assigned is refused with EEXIST before rmp_make_private
    # (arch/x86/kvm/svm/sev.c); snp_launch_update reports it as EIO when it is first.
    readd_errno = "EEXIST"
    # After LAUNCH_FINISH: snp_launch_update has no launch-state check (it refuses only a
    # VM without snp_context: EINVAL), so the call reaches kvm_gmem_populate and its
    # first page fails: sev_gmem_post_populate answers EEXIST for an RMP-assigned page;
    # for any other page the firmware refuses SNP_LAUNCH_UPDATE (assumption
    # A-snp-launch-state) and snp_page_reclaim returns the page to hypervisor-owned.
    # Either way count < 0, which snp_launch_update reports as EIO (fw_error in
    # argp->error). Read in arch/x86/kvm/svm/sev.c, kvm-x86/linux 1a27afa0511e.
    finalized_populate_errno = "EIO"
    # sev_gmem_invalidate (kvm-x86/linux sev.c 1a27afa0511e and 97ac0c81c448): for an
    # assigned RMP entry, rmp_make_shared + clflush_cache_range, and no clearing: the
    # entry goes back to hypervisor-owned and the host now sees the guest's ciphertext.
    # sev_gmem_prepare (rmp_make_private, not validated) does not clear either.
    content_after_removal = GARBAGE
    accept_zeroes = False  # PVALIDATE does not change contents
    # The RMP entry is independent of the NPT: sev_gmem_invalidate_range (the arch hook run
    # when KVM zaps a stage-2 range) only asks vCPUs whose VMSA lies in the range to reload
    # it, and leaves the RMP as it is (arch/x86/kvm/svm/sev.c, kvm-x86/linux 1a27afa0). An
    # assigned entry goes back to hypervisor-owned only through rmp_make_shared: on freeing
    # (sev_gmem_invalidate, the free_folio path) and, in v13, kvm_arch_gmem_make_shared.
    zap_releases_te = False
    # v13: sev_gmem_make_shared / sev_gmem_make_private implement the arch convert hooks
    # (their declarations, svm.h of the post-v8 tree). Assumption A-snp-make-shared:
    # sev_gmem_make_shared returns an assigned RMP entry to hypervisor-owned, as
    # sev_gmem_invalidate does (its body was not read).
    arch_convert = True
    # sev_gmem_post_populate refuses a NULL source (other than a ZERO page) with EINVAL while
    # in-place conversion is off ('[PATCH v8 22/46] KVM: SEV: Make 'uaddr' parameter optional
    # for KVM_SEV_SNP_LAUNCH_UPDATE'); snp_launch_update reports it as EIO when it is first.
    legacy_null_src_errno = "EINVAL"
    # RMP entries come in 4 KiB and 2 MiB. At launch sev_gmem_post_populate makes each page
    # private on its own, rmp_make_private(pfn + i, gfn_to_gpa(gfn + i), PG_LEVEL_4K, ...),
    # and SNP_LAUNCH_UPDATE measures 4 KiB pages: a huge folio populated whole still gets
    # 4 KiB RMP entries. At a private fault sev_gmem_prepare takes PG_LEVEL_2M when is_large_rmp_possible(kvm, pfn,
    # max_order) (the folio is 2 MiB and aligned): one 2 MiB RMP entry (arch/x86/kvm/svm/sev.c,
    # the SNP host series as posted on kvm@).
    te_huge_at_launch = False
    te_huge_at_fault = True
    te_huge_source = "sev_gmem_post_populate (PG_LEVEL_4K), sev_gmem_prepare (is_large_rmp_possible: PG_LEVEL_2M)"

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
    # tdx_vcpu_init_mem_region (arch/x86/kvm/vmx/tdx.c, Linux 6.16-6.18) loops calling
    # kvm_gmem_populate for ONE page at a time: a gfn past the guest_memfd memslot has
    # no guest_memfd slot, so -EINVAL, returned with gpa/nr_pages advanced past the
    # pages done. (The huge-page rework posted on kvm@ passes region.nr_pages at once
    # and answers a short count with -EIO; not modelled.)
    populate_clamps_to_slot = False
    # tdx_gmem_post_populate: TDH.MEM.PAGE.ADD (in place when the source is NULL, "KVM:
    # TDX: Make source page optional..." in v8; a copy by the TDX module otherwise) and
    # TDH.MR.EXTEND. Adding a page the S-EPT already maps: any result of
    # kvm_tdp_mmu_map_private_pfn other than "fixed" is EIO (kernels before 6.20 said
    # EEXIST from the generic up-to-date check).
    readd_errno = "EIO"
    # TDH.MEM.PAGE.REMOVE. Assumption A-tdx-clear: the page reads as zero afterwards
    # (tdx_quirk_reset_paddr, arch/x86/virt/vmx/tdx/tdx.c, clears with MOVDIR64B only
    # when X86_BUG_TDX_PW_MCE: on other parts no code clears it).
    content_after_removal = ZERO
    accept_zeroes = True  # TDG.MEM.PAGE.ACCEPT initializes the page to zero (TDX module ABI)
    # Zapping a private S-EPT entry removes the page from the TD: tdx_sept_remove_private_spte
    # (arch/x86/kvm/vmx/tdx.c, kvm-x86 2025-2026) runs TDH.MEM.RANGE.BLOCK, TDH.MEM.TRACK,
    # TDH.MEM.PAGE.REMOVE and TDH.PHYMEM.PAGE.WBINVD, then tdx_quirk_reset_page (which
    # clears only on parts with the erratum: assumption A-tdx-clear). The zap itself does
    # the work of a conversion to shared, so TDX needs no make_shared hook.
    zap_releases_te = True
    # tdx_gmem_post_populate: a NULL source is EOPNOTSUPP while in-place conversion is off
    # (the v8 TDX patch making the source optional: 'if (!gmem_in_place_conversion) return
    # -EOPNOTSUPP').
    legacy_null_src_errno = "EOPNOTSUPP"
    # The TD is built with 4 KiB private mappings only: tdx_gmem_post_populate adds one
    # page, TDH.MEM.PAGE.ADD of pfn_to_page(pfn), and TDH.MR.EXTEND over PAGE_SIZE; the
    # S-EPT hooks (tdx_sept_set_private_spte) refuse a level other than PG_LEVEL_4K
    # (arch/x86/kvm/vmx/tdx.c, kvm-x86). Huge S-EPT mappings at a fault come with the TDX
    # huge pages series (Yan Zhao), out of tree: not here.
    te_huge_at_launch = False
    te_huge_at_fault = False
    te_huge_source = "tdx_gmem_post_populate (TDH.MEM.PAGE.ADD of one 4 KiB page), tdx_sept_set_private_spte (PG_LEVEL_4K only)"

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


class Cca(TrustedPlatform):
    """Arm CCA Realms: the TE is the RMM; the TE's view of a page is a delegated granule
    with a RIPAS (RAM or EMPTY) and, once populated or faulted in, a DATA mapping.

    Read in Steven Price's KVM CCA series v15 <20260715142841.80544-1-steven.price@arm.com>
    (built on the in-place conversion series v8), arch/arm64/kvm/rmi.c as stored at
    gwshan/linux 0242b60a8f65 (a cca-host tree with kvm_gmem_is_private_gfn and the
    five-argument kvm_gmem_populate; that this commit is exactly the v15 posting is not
    confirmed), and the KVM_ARM_RMI_POPULATE text of Documentation/virt/kvm/api.rst:

    - kvm_arm_rmi_populate checks its argument before anything else: reserved set, an
      unknown flag (only KVM_ARM_RMI_POPULATE_FLAGS_MEASURE), an overflowing or unaligned
      range, an unaligned source_uaddr, or source_uaddr == 0 is EINVAL. So there is no
      populate in place on CCA: a NULL source is refused (EINVAL from the ioctl's own
      check, before kvm_gmem_populate and its EOPNOTSUPP for a NULL source could answer),
      and a CCA VMM copies the image aside, converts the destination to private, and
      populates from the copy (api.rst: "copying the data from the (non-protected) user
      space pointer provided into a protected region ... It implicitly sets the
      destination region to RIPAS RAM").
    - Then realm_ensure_created: a Realm already activated (its first KVM_RUN,
      kvm_activate_realm) is EBUSY, a dead one ENXIO. kvm_activate_realm itself returns 0
      when the Realm is already active.
    - kvm_gmem_populate runs populate_region_cb -> realm_data_map_init per page:
      rmi_delegate_page(dst) (a granule already delegated fails: ENXIO), then
      RMI_RTT_DATA_MAP_INIT copies the source granule into it and, with MEASURE, extends
      the RIM. Partial progress: kvm_gmem_populate returns its error only when the first
      page failed, else the pages done; kvm_arm_rmi_populate then returns 0 and advances
      base, size and source_uaddr (api.rst: "User space may have to repeatedly call it
      until size is 0").
    - A private guest fault: realm_map_protected delegates the granule and maps it with
      RMI_RTT_DATA_MAP (RIPAS RAM was set for every guest_memfd memslot at activation,
      set_ripas_of_protected_regions). Nothing for the guest to accept: the page is usable.
    - Unmapping a private range (conversion to shared, punch hole and release through the
      private invalidation filter, a RIPAS change to EMPTY): realm_unmap_private_range,
      RMI_RTT_DATA_UNMAP then undelegate: the granule leaves the Realm and its contents
      are gone.
    - A RIPAS change is guest-initiated (RSI_IPA_STATE_SET -> REC exit RIPAS_CHANGE):
      kvm_complete_ripas_change requires the guest_memfd attribute to match already
      (ripas_range_matches_gmem), else KVM_EXIT_MEMORY_FAULT so that userspace converts
      with KVM_SET_MEMORY_ATTRIBUTES2; the model's map_gpa_range + set_attributes stand
      for that exchange.
    """

    name = "cca"
    source = ("Arm CCA Realms: the RMM (RIPAS RAM/EMPTY, delegated granules), KVM_ARM_RMI_POPULATE "
              "(arch/arm64/kvm/rmi.c, Steven Price's v15 series <20260715142841.80544-1-steven.price@arm.com>)")
    populate_ioctl = "KVM_ARM_RMI_POPULATE"
    # kvm_arm_rmi_populate: !args->source_uaddr is EINVAL, with the argument checks.
    populate_requires_source = True
    no_source_errno = "EINVAL"
    finalized_populate_errno = "EBUSY"   # realm_ensure_created on an ACTIVE Realm
    # kvm_arm_rmi_populate hands the whole range to kvm_gmem_populate (see above), whose
    # npages clamp to the memslot's end then applies: 0 with the pages done. (Follows from
    # the call as read above; the edge itself was not exercised on a CCA tree.)
    populate_clamps_to_slot = True
    refinalize_errno = 0                 # kvm_activate_realm: already active -> 0
    # A protected IPA in RIPAS EMPTY raises a synchronous external abort in the Realm
    # (RMM spec). Unreachable here: prepare maps the granule usable at once.
    guest_exception = "SEA"
    readd_errno = "ENXIO"  # realm_data_map_init: rmi_delegate_page fails on a delegated granule
    # realm_unmap_private_range (RMI_RTT_DATA_UNMAP, undelegate) is both the private zap and
    # the only release: a punch whose range has no KVM-private page is invalidated with
    # KVM_FILTER_SHARED only (kvm_gmem_get_invalidate_filter reads the range's attributes,
    # "KVM: guest_memfd: ... inspect the memory attributes maple tree", Ackerley Tng, the
    # in-place series), so a granule the RMM holds there is freed still delegated.
    zap_releases_te = True
    free_by_filter = True
    # realm_unmap_private_range undelegates: assumption A-cca-scrub, the host then reads zero.
    content_after_removal = ZERO
    accept_zeroes = False  # RSI_IPA_STATE_SET to RAM leaves a DATA granule's contents
    # The RMM's unit is the 4 KiB granule: realm_data_map_init delegates and maps one
    # granule per RMI_RTT_DATA_MAP_INIT, and realm_map_protected one per RMI_RTT_DATA_MAP
    # (arch/arm64/kvm/rmi.c of the v15 series, as read above).
    te_huge_at_launch = False
    te_huge_at_fault = False
    te_huge_source = "realm_data_map_init / realm_map_protected (one 4 KiB granule each)"

    def post_populate(self, page, src_value):
        # populate_region_cb: never in place (the source is required before this point).
        # Assumption A-cca-measure: the VMM passes KVM_ARM_RMI_POPULATE_FLAGS_MEASURE.
        if src_value is None:
            raise AssertionError("cca populate without a source is refused before kvm_gmem_populate")
        return super().post_populate(page, src_value)

    def populate_ret(self, err, done):
        # kvm_gmem_populate: the error only when no page was done; kvm_arm_rmi_populate
        # passes it through, else returns 0 with base/size/source_uaddr advanced.
        if err is not None and done == 0:
            return err
        return 0

    def prepare(self, page):
        # realm_map_protected: delegate + RMI_RTT_DATA_MAP of the page kvm_gmem_get_pfn
        # gave (zeroed if not up to date); RIPAS is already RAM, so no accept is needed.
        if page.te != TE_NONE:
            return page
        return page._replace(te=TE_VALID)

    def host_touch_te_private(self, page, write):
        # A host access to a delegated granule faults its granule protection check.
        # Assumption A-cca-gpf: a user access gets SIGBUS (the arm64 GPF handling for user
        # mode was not read), and the granule is left as it was.
        return page, {"signal": "SIGBUS"}


PLATFORMS = {p.name: p for p in (Platform(), Snp(), Tdx(), Default(), Cca())}
