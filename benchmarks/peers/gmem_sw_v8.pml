/*
 * gmemlab's semantics in Promela, for SPIN: a cross-check of gmemlab's explorer.
 *
 * What is modelled: the same configuration and the same action set as
 *     explore(Config(proposal="private-first", platform="sw_protected", series="v8"),
 *             Bounds(pages=NPAGES), symmetry=False)
 * i.e. one guest_memfd of NPAGES pages (default 2) on a KVM_X86_SW_PROTECTED_VM, series
 * v8, created with MMAP with or without INIT_SHARED, one host process ("vmm"), values 'A'
 * for everything written, at most one extra reference per page. The actions, each one
 * d_step (one atomic transition, like one call of gmemlab's step()):
 *   set_attributes private|shared on each page and on the whole file,
 *   punch_hole on each page and on the whole file,
 *   host_write, host_read, pin, unpin on each page,
 *   guest_read, guest_write (private view) on each page.
 * sw_protected has no trusted entity, so there is no populate, finalize or accept, and
 * the view of a guest access is ignored (KVM takes it from the attribute).
 *
 * What is left out: everything gmemlab's Page tracks that cannot change on this
 * platform and series: te (no trusted entity), measured (no launch), dmap (no
 * NO_DIRECT_MAP); content and loaded take only the values 0 and 'A' (every fault here
 * zeroes a fresh folio, so STALE never survives a step, and v8 never scrambles).
 *
 * The state vector, and how it maps to gmemlab's VmState / Page (gmemlab/model/state.py):
 *   created       VmState.created
 *   init_shared   VmState.gmem_flags: 1 = {MMAP, INIT_SHARED}, 0 = {MMAP}
 *   pg[i].private    Page.private     (KVM's attribute)
 *   pg[i].allocated  Page.allocated
 *   pg[i].uptodate   Page.uptodate
 *   pg[i].content    Page.content:  0 = 0 (zero page), 1 = 'A'
 *   pg[i].loaded     Page.loaded:   0 = nothing loaded, 1 = 'A'
 *   pg[i].mapped     Page.mapped:   0 = (), 1 = ("vmm",)
 *   pg[i].pins       Page.pins:     0 or 1
 * VmState.finalized and VmState.huge stay False here. Loop indices are "hidden": not
 * part of the state vector, so they never tell two states apart.
 *
 * How SPIN counts the same states as gmemlab:
 *   - one process (init) whose body is a single do-loop; every option is one d_step,
 *     so each action goes from the loop head back to the loop head in one transition
 *     and no intermediate or extra control state is ever stored: a stored state is
 *     exactly the global variables, at the one control point;
 *   - an action that fails or changes nothing (SIGBUS, EFAULT, EAGAIN, an attribute
 *     already set) is still enabled and leads back to the same state, as in gmemlab
 *     (a self loop), so SPIN's transition count can be compared too;
 *   - gmemlab leaves out a pin that would take a page past Bounds.max_pins (1): here
 *     that pin is not enabled;
 *   - gmemlab's exploration starts from the states create_gmem makes (its roots); SPIN
 *     starts one state earlier, before create_gmem (created == 0), whose only two
 *     transitions are the two creates. So SPIN stores gmemlab's states + 1 and
 *     explores gmemlab's transitions + 2. benchmarks/peers/run_spin.py subtracts
 *     exactly that and checks the rest is equal.
 *   - init_shared is written at create_gmem and never read again (every action here
 *     behaves the same with or without INIT_SHARED), so SPIN's dead-variable
 *     optimization would drop it from the state vector and fold the two files into
 *     one; gmemlab's VmState keeps gmem_flags, so run_spin.py generates the verifier
 *     with "spin -o2" (keep write-only variables).
 * Partial-order reduction cannot merge anything with a single process; the verifier is
 * compiled with -DNOREDUCE anyway so that nothing but the state vector decides, and
 * -DSAFETY (no cycle detection: only reachable states are counted).
 *
 * Any number of pages: the per-page options (one PAGE(k) line for each k in
 * 0 .. NPAGES-1) are not written here but #included from gmem_sw_v8_pages.pml, a file
 * of those lines that run_spin.py writes next to its copy of this model for the page
 * count asked for (the C preprocessor cannot loop, and a fixed list of "#if NPAGES > k"
 * lines silently explores a smaller model past its last line). That file also stops
 * the preprocessor (#error) when it was written for another NPAGES. The page count is
 * bounded by "hidden byte i" (a loop over the pages ends at i == NPAGES, so at most 255
 * pages) and, for the comparison, by gmemlab's own limit gmemlab.model.vocab.MAX_PAGES;
 * run_spin.py refuses a count outside 1 .. that limit. At one page there is no
 * whole-file action (gmemlab adds them only from two pages on).
 *
 * Run it: python3 benchmarks/peers/run_spin.py [--pages 3]   (or by hand, N pages:
 *   N=3; printf 'PAGE(%d)\n' $(seq 0 $((N-1))) > gmem_sw_v8_pages.pml
 *   spin -o2 -DNPAGES=$N -a gmem_sw_v8.pml && gcc -O2 -DSAFETY -DNOREDUCE -o pan pan.c && ./pan -m1000000
 *   and raise -m if pan says "max search depth too small": at 5 pages it needs -m4000000)
 */

#ifndef NPAGES
#define NPAGES 2
#endif

typedef Page {
    bit private;
    bit allocated;
    bit uptodate;
    bit content;
    bit loaded;
    bit mapped;
    bit pins
};

bit created;
bit init_shared;
Page pg[NPAGES];
hidden byte i;
hidden byte any_pinned;
hidden byte all_set;

/* __kvm_gmem_get_pfn with zeroing (every fault on sw_protected v8): allocate a folio if
   there is none; zero it if it is not up to date (gmemlab: step._get_pfn(zero=True)). */
inline get_pfn(k) {
    if
    :: !pg[k].allocated -> pg[k].allocated = 1; pg[k].uptodate = 0; pg[k].content = 0
    :: else -> skip
    fi;
    if
    :: !pg[k].uptodate -> pg[k].uptodate = 1; pg[k].content = 0
    :: else -> skip
    fi
}

/* A host fault through the vmm's mmap of a shared page (step._host_fault). */
inline host_fault(k) {
    get_pfn(k);
    pg[k].mapped = 1
}

/* fallocate(PUNCH_HOLE) of one page: free the folio, keep the attribute. */
inline punch(k) {
    pg[k].allocated = 0; pg[k].uptodate = 0; pg[k].content = 0; pg[k].loaded = 0;
    pg[k].mapped = 0; pg[k].pins = 0
}

/* KVM_SET_MEMORY_ATTRIBUTES2 to private over pages lo..hi (step.set_attributes):
   nothing if every page is already private; otherwise unmap them all from the host,
   then EAGAIN (no attribute changed) if any is pinned, else convert. */
inline to_private(lo, hi) {
    all_set = 1;
    for (i : lo .. hi) { if :: !pg[i].private -> all_set = 0 :: else -> skip fi };
    if
    :: all_set -> skip
    :: else ->
        any_pinned = 0;
        for (i : lo .. hi) { pg[i].mapped = 0; if :: pg[i].pins -> any_pinned = 1 :: else -> skip fi };
        if
        :: any_pinned -> skip
        :: else -> for (i : lo .. hi) { pg[i].private = 1 }
        fi
    fi;
    i = 0; any_pinned = 0; all_set = 0
}

/* ... to shared: no unmapping, contents survive on sw_protected v6-v8 (a page already
   shared stays as it is, so clearing the bit everywhere is the same thing). */
inline to_shared(lo, hi) {
    for (i : lo .. hi) { pg[i].private = 0 };
    i = 0
}

/* The actions on page k. A private page refuses host faults (SIGBUS) and pins (EFAULT). */
inline host_write(k) { if :: pg[k].private -> skip :: else -> host_fault(k); pg[k].content = 1; pg[k].loaded = 1 fi }
inline host_read(k)  { if :: pg[k].private -> skip :: else -> host_fault(k) fi }
inline pin(k)        { if :: pg[k].private -> skip :: else -> host_fault(k); pg[k].pins = 1 fi }
inline unpin(k)      { pg[k].pins = 0 }
inline guest_read(k)  { get_pfn(k) }
inline guest_write(k) { get_pfn(k); pg[k].content = 1 }

/* Two invariants of gmemlab.invariants, checked after every step (both hold here). */
inline check() {
    for (i : 0 .. NPAGES - 1) {
        assert(!(pg[i].private && pg[i].mapped));   /* private_not_host_mapped */
        assert(!(pg[i].private && pg[i].pins))      /* private_not_pinned */
    };
    i = 0
}

/* One option per action and page: the page index is a literal, so no index variable
   is left in the state. The PAGE(0) .. PAGE(NPAGES-1) lines come from
   gmem_sw_v8_pages.pml (see the header). */
#define PAGE(k) \
    :: d_step { created; to_private(k, k); check() } \
    :: d_step { created; to_shared(k, k); check() } \
    :: d_step { created; punch(k); check() } \
    :: d_step { created; host_write(k); check() } \
    :: d_step { created; host_read(k); check() } \
    :: d_step { created && (pg[k].private || !pg[k].pins); pin(k); check() } \
    :: d_step { created; unpin(k); check() } \
    :: d_step { created; guest_read(k); check() } \
    :: d_step { created; guest_write(k); check() }

init {
    do
    /* KVM_CREATE_GUEST_MEMFD with MMAP, with and without INIT_SHARED */
    :: d_step { !created; created = 1; init_shared = 1 }
    :: d_step { !created; created = 1; init_shared = 0;
                for (i : 0 .. NPAGES - 1) { pg[i].private = 1 }; i = 0 }
#if NPAGES > 1
    /* the whole file (gmemlab adds these when there is more than one page) */
    :: d_step { created; to_private(0, NPAGES - 1); check() }
    :: d_step { created; to_shared(0, NPAGES - 1); check() }
    :: d_step { created; for (i : 0 .. NPAGES - 1) { punch(i) }; i = 0; check() }
#endif
    /* PAGE(0) .. PAGE(NPAGES - 1), written by run_spin.py for the page count asked for */
#include "gmem_sw_v8_pages.pml"
    od
}
