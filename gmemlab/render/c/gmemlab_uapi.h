/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * gmemlab_uapi.h: the guest_memfd uAPI that the selftests written by
 * `gmemlab selftest` use, for kernel headers that predate it (Debian 12
 * ships 6.1's <linux/kvm.h>, without guest_memfd).
 *
 * Every definition is guarded by #ifndef, so with newer headers the
 * installed ones win.  Values and layouts follow include/uapi/linux/kvm.h
 * (6.18 for guest_memfd, the in-place conversion series for
 * KVM_SET_MEMORY_ATTRIBUTES2, RFC v5 for its content-mode flags);
 * docs/domain.md of gmemlab lists the uAPI facts and their sources.
 */
#ifndef GMEMLAB_UAPI_H
#define GMEMLAB_UAPI_H

#include <linux/kvm.h>
#include <linux/types.h>

#ifndef KVM_CAP_USER_MEMORY2
#define KVM_CAP_USER_MEMORY2 231
#endif
#ifndef KVM_CAP_GUEST_MEMFD
#define KVM_CAP_GUEST_MEMFD 234
#endif
#ifndef KVM_CAP_VM_TYPES
#define KVM_CAP_VM_TYPES 235
#endif

#ifndef KVM_X86_DEFAULT_VM
#define KVM_X86_DEFAULT_VM 0
#endif
#ifndef KVM_X86_SW_PROTECTED_VM
#define KVM_X86_SW_PROTECTED_VM 1
#endif

#ifndef KVM_MEM_GUEST_MEMFD
#define KVM_MEM_GUEST_MEMFD (1UL << 2)
#endif

/* KVM_SET_USER_MEMORY_REGION2 (6.8): a memslot that names a guest_memfd. */
#ifndef KVM_SET_USER_MEMORY_REGION2
struct kvm_userspace_memory_region2 {
	__u32 slot;
	__u32 flags;
	__u64 guest_phys_addr;
	__u64 memory_size;
	__u64 userspace_addr;
	__u64 guest_memfd_offset;
	__u32 guest_memfd;
	__u32 pad1;
	__u64 pad2[14];
};
#define KVM_SET_USER_MEMORY_REGION2 \
	_IOW(KVMIO, 0x49, struct kvm_userspace_memory_region2)
#endif

/* KVM_CREATE_GUEST_MEMFD (6.8): a VM ioctl that returns the new file. */
#ifndef KVM_CREATE_GUEST_MEMFD
struct kvm_create_guest_memfd {
	__u64 size;
	__u64 flags;
	__u64 reserved[6];
};
#define KVM_CREATE_GUEST_MEMFD \
	_IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)
#endif

/* Its flags (6.18), and NO_DIRECT_MAP from the series of that name. */
#ifndef GUEST_MEMFD_FLAG_MMAP
#define GUEST_MEMFD_FLAG_MMAP (1ULL << 0)
#endif
#ifndef GUEST_MEMFD_FLAG_INIT_SHARED
#define GUEST_MEMFD_FLAG_INIT_SHARED (1ULL << 1)
#endif
#ifndef GUEST_MEMFD_FLAG_NO_DIRECT_MAP
#define GUEST_MEMFD_FLAG_NO_DIRECT_MAP (1ULL << 2)
#endif

#ifndef KVM_MEMORY_ATTRIBUTE_PRIVATE
#define KVM_MEMORY_ATTRIBUTE_PRIVATE (1ULL << 3)
#endif

/*
 * KVM_SET_MEMORY_ATTRIBUTES2 (the in-place conversion series): an ioctl on
 * the guest_memfd itself.  error_offset is written back on failure.
 */
#ifndef KVM_SET_MEMORY_ATTRIBUTES2
struct kvm_memory_attributes2 {
	union {
		__u64 address;
		__u64 offset;
	};
	__u64 size;
	__u64 attributes;
	__u64 flags;
	__u64 error_offset;
	__u64 reserved[11];
};
#define KVM_SET_MEMORY_ATTRIBUTES2 \
	_IOWR(KVMIO, 0xd2, struct kvm_memory_attributes2)
#endif

/* Content modes of RFC v4/v5 (series v5 only). */
#ifndef KVM_SET_MEMORY_ATTRIBUTES2_ZERO
#define KVM_SET_MEMORY_ATTRIBUTES2_ZERO (1ULL << 0)
#endif
#ifndef KVM_SET_MEMORY_ATTRIBUTES2_PRESERVE
#define KVM_SET_MEMORY_ATTRIBUTES2_PRESERVE (1ULL << 1)
#endif

/*
 * The vCPU path (guest_read, guest_write, map_gpa_range).  The exit reason
 * of a private/shared mismatch arrived in 6.8 (KVM_EXIT_MEMORY_FAULT,
 * Documentation/virt/kvm/api.rst); KVM_HC_MAP_GPA_RANGE reaches userspace
 * as KVM_EXIT_HYPERCALL once KVM_CAP_EXIT_HYPERCALL enables it
 * (Documentation/virt/kvm/x86/hypercalls.rst, KVM_HC_MAP_GPA_RANGE).
 */
#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39
#endif
#ifndef KVM_CAP_EXIT_HYPERCALL
#define KVM_CAP_EXIT_HYPERCALL 201
#endif
#ifndef KVM_HC_MAP_GPA_RANGE
#define KVM_HC_MAP_GPA_RANGE 12
#endif
#ifndef KVM_MAP_GPA_RANGE_ENCRYPTED
#define KVM_MAP_GPA_RANGE_ENCRYPTED (1 << 4)
#endif

/*
 * The x86 launch uAPI below names x86-only types (struct kvm_cpuid2): it is
 * declared for x86 builds only, so that a cca program also builds on arm64.
 */
#if defined(__x86_64__) || defined(__i386__)

/*
 * SEV-SNP launch (Linux 6.10/6.11), as Documentation/virt/kvm/x86/
 * amd-memory-encryption.rst describes it and arch/x86/include/uapi/asm/kvm.h
 * lays it out: every command is a KVM_MEMORY_ENCRYPT_OP on the VM with a
 * struct kvm_sev_cmd (present since 4.16) whose id picks the command and
 * whose data points at the command's own struct.  KVM_SEV_INIT2 came with
 * the VM types KVM_X86_SEV_VM / KVM_X86_SEV_ES_VM (6.10), the SNP commands
 * (numbered from 100) with KVM_X86_SNP_VM (6.11): each macro below guards
 * what arrived with it.  Newer headers declare the command ids as enum
 * sev_cmd_id members, which the #ifndef cannot see; the macros then take
 * the same values.
 */
#ifndef KVM_X86_SEV_VM
#define KVM_X86_SEV_VM 2
#define KVM_X86_SEV_ES_VM 3
#define KVM_SEV_INIT2 22		/* enum sev_cmd_id, after KVM_SEV_SEND_CANCEL */
/* KVM_SEV_INIT2's argument: VMSA features, flags, the GHCB version (0: default) */
struct kvm_sev_init {
	__u64 vmsa_features;
	__u32 flags;
	__u16 ghcb_version;
	__u16 pad1;
	__u32 pad2[8];
};
#endif

#ifndef KVM_X86_SNP_VM
#define KVM_X86_SNP_VM 4
#define KVM_SEV_SNP_LAUNCH_START 100
#define KVM_SEV_SNP_LAUNCH_UPDATE 101
#define KVM_SEV_SNP_LAUNCH_FINISH 102
/* LAUNCH_START: the guest policy (firmware ABI), the OS-visible workarounds */
struct kvm_sev_snp_launch_start {
	__u64 policy;
	__u8 gosvw[16];
	__u16 flags;			/* must be 0 */
	__u8 pad0[6];
	__u64 pad1[4];
};
/*
 * LAUNCH_UPDATE: load [gfn_start, gfn_start + len / 4K) from uaddr (the
 * in-place series: uaddr 0 means the destination is its own source) and
 * measure it.  The range must be private.  On success the command may
 * stop early: gfn_start and len (and a non-zero uaddr) are written back,
 * advanced past what was done (amd-memory-encryption.rst).
 */
struct kvm_sev_snp_launch_update {
	__u64 gfn_start;
	__u64 uaddr;
	__u64 len;			/* bytes, 4K-aligned */
	__u8 type;			/* KVM_SEV_SNP_PAGE_TYPE_* (firmware values) */
	__u8 pad0;
	__u16 flags;			/* must be 0 */
	__u32 pad1;
	__u64 pad2[4];
};
/* LAUNCH_FINISH: no ID block, no author key, no host data */
struct kvm_sev_snp_launch_finish {
	__u64 id_block_uaddr;
	__u64 id_auth_uaddr;
	__u8 id_block_en;
	__u8 auth_key_en;
	__u8 vcek_disabled;
	__u8 host_data[32];
	__u8 pad0[3];
	__u16 flags;			/* must be 0 */
	__u64 pad1[4];
};
#endif
#ifndef KVM_SEV_SNP_PAGE_TYPE_NORMAL
#define KVM_SEV_SNP_PAGE_TYPE_NORMAL 0x1
#endif
/*
 * Guest policy bits of the SEV-SNP firmware ABI (not uAPI; the kernel
 * selftests' include/x86/sev.h names them alike): SMT allowed, and bit 17,
 * reserved, which must be one.
 */
#ifndef SNP_POLICY_SMT
#define SNP_POLICY_SMT (1ULL << 16)
#endif
#ifndef SNP_POLICY_RSVD_MBO
#define SNP_POLICY_RSVD_MBO (1ULL << 17)
#endif

/*
 * TDX (Linux 6.16), from Documentation/virt/kvm/x86/intel-tdx.rst: a
 * KVM_MEMORY_ENCRYPT_OP on the VM or on a vCPU with a struct kvm_tdx_cmd.
 * Flow: KVM_TDX_CAPABILITIES and KVM_TDX_INIT_VM on the VM before any vCPU,
 * then KVM_CREATE_VCPU and KVM_TDX_INIT_VCPU, then KVM_TDX_INIT_MEM_REGION
 * (a vCPU command; the range must be private) and KVM_TDX_FINALIZE_VM.
 */
#ifndef KVM_X86_TDX_VM
#define KVM_X86_TDX_VM 5
#define KVM_TDX_CAPABILITIES 0		/* enum kvm_tdx_cmd_id */
#define KVM_TDX_INIT_VM 1
#define KVM_TDX_INIT_VCPU 2
#define KVM_TDX_INIT_MEM_REGION 3
#define KVM_TDX_FINALIZE_VM 4
struct kvm_tdx_cmd {
	__u32 id;			/* KVM_TDX_* */
	__u32 flags;			/* the command's flags, or 0 */
	__u64 data;			/* an immediate, or a pointer to its struct */
	__u64 hw_error;			/* out: the TDX module's status, if any */
};
/* KVM_TDX_CAPABILITIES (out); cpuid.nent is set by the caller to its room */
struct kvm_tdx_capabilities {
	__u64 supported_attrs;
	__u64 supported_xfam;
	__u64 kernel_tdvmcallinfo_1_r11;
	__u64 user_tdvmcallinfo_1_r11;
	__u64 kernel_tdvmcallinfo_1_r12;
	__u64 user_tdvmcallinfo_1_r12;
	__u64 reserved[250];
	struct kvm_cpuid2 cpuid;
};
/* KVM_TDX_INIT_VM: 256 bytes of TD parameters, then the CPUID entries */
struct kvm_tdx_init_vm {
	__u64 attributes;
	__u64 xfam;
	__u64 mrconfigid[6];
	__u64 mrowner[6];
	__u64 mrownerconfig[6];
	__u64 reserved[12];
	struct kvm_cpuid2 cpuid;
};
/*
 * KVM_TDX_INIT_MEM_REGION: add nr_pages at gpa from source_addr (the
 * in-place series: 0 means in place); gpa and nr_pages (and source_addr)
 * are written back advanced past the pages added, also on an error.
 */
struct kvm_tdx_init_mem_region {
	__u64 source_addr;
	__u64 gpa;
	__u64 nr_pages;
};
#endif
#ifndef KVM_TDX_MEASURE_MEMORY_REGION
#define KVM_TDX_MEASURE_MEMORY_REGION (1ULL << 0)
#endif

#endif /* __x86_64__ || __i386__ */

/*
 * Arm CCA Realms (arm64), from Steven Price's KVM CCA series, v15
 * <20260715142841.80544-1-steven.price@arm.com>; the text read is that of
 * its v14 posting (2026-05-13), "arm64: RMI: Define the user ABI" and "KVM:
 * arm64: Allow passing machine type in KVM creation", Documentation/virt/
 * kvm/api.rst (4.145 KVM_ARM_RMI_POPULATE; 4.1 KVM_CREATE_VM, ARM64).
 *
 * A Realm is a VM created with the machine type KVM_VM_TYPE_ARM_REALM (one
 * of bits[31:30] of the type; bits[7:0] stay the IPA size, 0 the default);
 * KVM_CREATE_VM refuses it with EINVAL where the RMM is absent.  There is
 * nothing to enable: KVM_CAP_ARM_RMI only reports that Realms are
 * available (its number changed between postings, so it is not used here),
 * the Realm descriptor is created at the first populate and the Realm is
 * activated at the first KVM_RUN.  KVM_ARM_RMI_POPULATE, a vm ioctl, copies
 * [base, base + size) from source_uaddr into the Realm's protected memory
 * (guest_memfd) and sets it RIPAS RAM; flags may request that the data be
 * measured into the Realm Initial Measurement.  It may stop early: the
 * kernel writes the struct back with base, size and source_uaddr advanced
 * past what was populated ("repeatedly call it until size is 0").
 */
#ifndef KVM_VM_TYPE_ARM_REALM
#define KVM_VM_TYPE_ARM_REALM (1UL << 30)
#endif
#ifndef KVM_ARM_RMI_POPULATE
struct kvm_arm_rmi_populate {
	__u64 base;			/* in/out: the first IPA to populate */
	__u64 size;			/* in/out: bytes left, page-aligned */
	__u64 source_uaddr;		/* in/out: the source, page-aligned */
	__u32 flags;			/* KVM_ARM_RMI_POPULATE_FLAGS_* */
	__u32 reserved;			/* must be 0 */
};
#define KVM_ARM_RMI_POPULATE \
	_IOWR(KVMIO, 0xd7, struct kvm_arm_rmi_populate)
#endif
#ifndef KVM_ARM_RMI_POPULATE_FLAGS_MEASURE
#define KVM_ARM_RMI_POPULATE_FLAGS_MEASURE (1 << 0)
#endif

#endif /* GMEMLAB_UAPI_H */
