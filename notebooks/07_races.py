# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 - Races
#
# ## Overview
# The other notebooks make every call one atomic step. Here the calls interleave
# (`Bounds.interleave`, gmemlab.model.threads): the VMM's thread converts, populates and
# punches; a second thread of its process touches the file through its mmap and pins it
# with GUP-fast; with three threads a vCPU makes the guest's accesses. Each call runs as
# steps at the kernel's lock boundaries (the invalidate lock), and the explorer tries
# the threads' steps in every order.
#
# The races argued after v8 are knobs: `gup_fast_no_recheck` (GUP-fast without its
# second read of the page table entry, mm/gup.c gup_fast_pte_range),
# `check_before_unmap` (the conversion's reference check before unmap_mapping_pages
# instead of after it) and `populate_holds_lock` (kvm_gmem_populate keeps the
# invalidate lock instead of dropping it between pages). Each proposal is explored with
# none of them and with each one on, and with atomic calls: what the atomic model
# breaks as well is no race. Each race found is drawn as lanes, one column per thread.
#
# Two assumptions of the model decide what the interleavings can break (their text, as
# the model's list of assumptions has it, is shown below the parameters): A-speculative-ref (the
# reference GUP-fast holds before it re-reads the page table is no pin) and
# A-guest-fault-waits (a guest access waits while another thread holds the invalidate
# lock exclusively).

# %% tags=["parameters"]
proposals = ["private-first", "populate-converts", "userspace-converts"]
platforms = ["snp", "tdx"]       # sw_protected | default | snp | tdx | cca
series = "v8"                    # v5 | v7 | v8 | v13
race_pages = 1                   # pages of the guest_memfd (2 pages take minutes a run)
threads = 2                      # threads making the calls: 1..3
knobs = ["gup_fast_no_recheck", "check_before_unmap", "populate_holds_lock"]
results_path = ""                # where to write the results as JSON (papermill, tests)

# %%
from gmemlab.render import races as R
from gmemlab.render import views
from gmemlab.render.html import pre, show

races = R.explore_races(proposals, platforms, series, race_pages, threads, knobs)
show(R.assumptions_html())

# %% [markdown]
# ## Which interleavings break which invariant
# One column per knob setting ("none": none of the race knobs on). A cell is `holds` or
# `BROKEN n`, n the steps of the shortest counterexample (a step: a call begun, or a
# step of one). Red: only interleavings break it (bold: only with that knob on); grey:
# the atomic model breaks it too. At 1 page a note says why "pop. lock" repeats "none".

# %%
show(R.matrix_html(races))

# %% [markdown]
# ## The races, as lanes
# Each verdict only interleavings break, with why: what the knob changes against the
# kernel, and which calls of the other threads the steps show in flight. In the lanes
# each row is a step of the counterexample in its thread's column: a call begun,
# `· step k` a step of it, `· blocked` a step that waited for the invalidate lock,
# `→` the step that ends the call, with its outcome. A call begun that takes no step
# before the counterexample ends is left out of the lanes (the search begins an idle
# thread's call first; the trace keeps it): a note under the lanes names it.

# %%
show(R.counterexamples_html(races))

# %% [markdown]
# ## Summary
# The headline, computed from the runs above, then the races found per proposal; the
# matrix is written to `results_path`.

# %%
results = R.race_data(races)
views.save_results(results_path, results)
show(pre(R.race_summary(races)))
