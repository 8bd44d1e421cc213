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

#endif /* GMEMLAB_UAPI_H */
