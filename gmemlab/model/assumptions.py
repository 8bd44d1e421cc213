"""Where the kernel is silent or disputed, the model decides; each decision has a name.

Code comments mark each place with its name (``Assumption A-...``); a test checks that
every name used in the code is listed here and every listed name is used.
"""

ASSUMPTIONS: dict[str, str] = {
    "A-init": "Zeroing a folio that holds no data yet (not up to date) is initialization, "
              "not 'writing a private page's contents': every series zeroes on the guest fault "
              "(kvm_gmem_get_pfn), v8 also in populate.",
    "A-direct-map": "With NO_DIRECT_MAP (a separate series), a folio leaves the direct map when "
                    "allocated as private or converted to private, and returns on conversion to "
                    "shared (the seed's 'direct map removal/restoration' as part of conversion).",
    "A-one-gmem": "A trace follows one guest_memfd; a second successful create_gmem replaces it.",
    "A-pin-all-or-nothing": "A pin that meets a private page (GUP refused: EFAULT) takes no "
                            "references at all.",
    "A-unpin-orphan": "Unpinning a page with no modelled reference is a no-op (the reference may "
                      "hold a folio that was punched away).",
    "A-punch-drops-pins": "References on a punched folio no longer count against the index: "
                          "they hold the detached folio.",
    "A-sw-no-launch": "sw_protected VMs have no launch ioctls: populate and finalize are ENOTTY "
                      "(KVM_MEMORY_ENCRYPT_OP without mem_enc_ioctl).",
    "A-snp-launch-state": "After LAUNCH_FINISH the SNP firmware refuses SNP_LAUNCH_UPDATE for a page "
                          "not yet RMP-assigned (so a populate then fails: EIO, snp_launch_update), "
                          "and a second LAUNCH_FINISH is answered EINVAL, as the unmerged '[PATCH] KVM: "
                          "SEV: Track SNP launch state and disallow invalid userspace interactions' "
                          "would; kvm-x86's snp_launch_finish has no such check.",
    "A-run-after-launch": "On snp and tdx no vCPU runs before launch is finalized: guest events "
                          "before finalize get EINVAL (KVM_RUN refused).",
    "A-shared-access-te-page": "A shared-view guest access to a page the TE holds while KVM tracks it "
                               "as shared cannot be mapped and exits with KVM_EXIT_MEMORY_FAULT.",
    "A-sw-accept-noop": "On sw_protected there is nothing to validate or accept: guest_accept is ok.",
    "A-default-no-mmap-guest": "On platform default, a guest access to a guest_memfd created without "
                               "MMAP is answered as if it reached the file. The kernel's guest reaches "
                               "the memslot's userspace_addr instead (the memslot is not guest_memfd-only "
                               "and a default VM has no private memory); gmemlab kvm-run ends a run there.",
    "A-snp-rmp-fault": "A user-mode access to an RMP-assigned page gets SIGBUS (Michael Roth's proposed "
                       "handling of user RMP faults; not settled in mainline).",
    "A-tdx-host-access": "A host read of TD-private memory returns zeros; a host write corrupts the "
                         "page for the TD (poison), with no machine check for the host (no "
                         "partial-write erratum).",
    "A-tdx-clear": "After TDH.MEM.PAGE.REMOVE (conversion to shared) the page reads as zero; mainline "
                   "clears explicitly only on parts with the partial-write erratum.",
    "A-cca-scrub": "On cca, after realm_unmap_private_range (RMI_RTT_DATA_UNMAP, then undelegate) the "
                   "host reads the granule as zero: the Realm's data is gone (RMM granule wiping); the "
                   "kernel code does not say what the host then sees.",
    "A-cca-measure": "On cca the VMM passes KVM_ARM_RMI_POPULATE_FLAGS_MEASURE, so every populated "
                     "page is measured into the RIM (the model's populate carries no flags).",
    "A-cca-gpf": "On cca a user access to a delegated granule (only reachable when the RMM holds a page "
                 "KVM tracks as shared) gets SIGBUS from its granule protection fault; the arm64 "
                 "fault handling of a GPF was not read.",
    "A-cca-activate": "On cca, finalize stands for the Realm's activation at the first KVM_RUN "
                      "(kvm_activate_realm); guest events count only after it (as A-run-after-launch).",
    "A-goal": "'Launched and running' (no_stuck_state's goal) is: launch finalized (snp, tdx) and no "
              "page the TE holds while KVM tracks it as shared.",
    "A-vmm-transient": "vmm_recovers: the references and allocation failures the VMM cannot see are "
                       "transient: whoever holds an extra reference drops it eventually, and "
                       "allocations succeed again. A reference the VMM must drop itself is not modelled. "
                       "With transient_refs the LRU batches drain eventually, also of the folios the "
                       "VMM's own calls allocate.",
    "A-lru-batch": "With transient_refs, a folio guest_memfd allocates starts in a per-CPU LRU batch "
                   "that holds a reference (filemap_add_folio -> folio_add_lru) until some drain "
                   "(lru_drain); a huge folio never does (folio_may_be_lru_cached). In v13 the check "
                   "drains the batches before it counts (lru_cache_drain_for_folio), so no rule reads "
                   "the batch there and the model keeps none. Nothing puts a folio back in a batch "
                   "after its first drain (a later folio_mark_accessed could).",
    "A-noslot-shared": "On sw_protected and default, a guest access to a gpa outside every memslot is "
                       "shared (no memslot, no attribute): KVM_EXIT_MMIO.",
    "A-memslot-replace-te": "replace_memslot leaves the TE's state of the pages that stay in the "
                            "memslot as it is: SNP's RMP entry belongs to the pfn and kvm_gmem_unbind "
                            "does not reclaim it; TDX's S-EPT removal when the deleted memslot is "
                            "zapped is not modelled.",
    "A-snp-make-shared": "v13: sev_gmem_make_shared (SNP's kvm_arch_gmem_make_shared, declared in the "
                         "post-v8 svm.h; its body was not read) returns an assigned RMP entry to "
                         "hypervisor-owned, as sev_gmem_invalidate does on freeing.",
    "A-per-vm-private": "With kvm.gmem_in_place_conversion off (knob in_place_off) the model's attribute "
                        "stands for the per-VM one, which the VMM sets private over the guest_memfd's "
                        "range before launch (KVM_SET_MEMORY_ATTRIBUTES, not modelled as an event): a "
                        "file created without INIT_SHARED is private, and nothing converts it.",
    "A-unknown-src": "A populate whose source a recording cannot show (src \"unknown\") is replayed "
                     "in place, as the in-place series' snp_launch_update does for a guest_memfd "
                     "memslot that supports shared memory (src = NULL).",
    "A-huge-merge-on-conversion": "With the huge_folios knob, a split huge folio is one folio again "
                                  "after a conversion of one of its pages (or a punch of all of them) "
                                  "leaves all its pages with one attribute, none held by the TE while "
                                  "shared, and none pinned or host-mapped; merging zeroes the pages never "
                                  "up to date ('On merging, the non-uptodate parts have to be zeroed', "
                                  "Ackerley Tng, v8 review). No merged code says when a merge happens.",
    "A-guest-fault-waits": "With interleaved threads, a guest access waits while another thread holds "
                           "the file's invalidate lock exclusively (a conversion, a punch, a populate's "
                           "page): a vCPU fault inside an invalidation retries "
                           "(mmu_invalidate_in_progress) until it ends. Not a lock the vCPU takes.",
    "A-speculative-ref": "The reference a GUP-fast call holds between taking it (try_grab_folio) and "
                         "reading the page table entry again is not a pin: it counts in the "
                         "conversion's refcount check, but no caller holds it, and it is dropped if "
                         "the entry changed (gup_fast_pte_range, mm/gup.c). private_not_pinned and "
                         "host_never_touches_te_private leave it out.",
    "A-vmm-documented": "The reference VMM retries only what the uAPI documents as transient (EAGAIN, "
                        "ENOMEM, EINTR) and resumes a partial populate; any other error stops the launch, "
                        "as QEMU's launch code does.",
}
