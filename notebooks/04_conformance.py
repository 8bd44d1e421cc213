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
# # 04 - Trace conformance
#
# ## Overview
# Traces are what happened to one guest_memfd (docs/trace-format.md, gmemlab-trace/1):
# emulated launches, hand-written selftest scenarios, converted recordings. Each is
# replayed through the model of one proposal, as `gmemlab check-trace` does: where an
# event records its observed outcome ("expect") the model's prediction must match.
# A trace **conforms** (every prediction matches, no invariant broken), **violates**
# (matches, but an invariant breaks along the way) or **diverges** (some prediction
# differs: the first divergence is shown with the lanes of the steps around it). Where
# the traces folder has a manifest.json, its recorded verdict is shown beside ours.
# Coverage says which ops and outcomes the traces exercised and how many of the
# per-page states the model reaches they visit. Last, the running kernel is the oracle:
# the corpus runs on /dev/kvm and each event's outcome is set beside the model's.

# %% tags=["parameters"]
traces = "../data/traces"    # a trace file, a folder (every *.jsonl below it), or a list
proposal = "private-first"   # private-first | populate-converts | userspace-converts
series = ""                  # empty: each trace header names its series; or v5 | v7 | v8 | v13
knobs = []                   # e.g. ["refuse_unprepared_populate"]
kernel_traces = ["../data/traces", "../data/emulated"]  # what tests/test_kvm.py runs on the kernel
kvm_device = "/dev/kvm"      # the KVM device of "The kernel as the oracle"
results_path = ""            # where to write the results as JSON (papermill, tests)

# %%
from gmemlab.render import kernel, views
from gmemlab.render.html import pre, show, verdicts_html

conf = views.conformance(traces, proposal, series or None, knobs)

# %% [markdown]
# ## Verdicts

# %%
show(views.proposal_html(proposal) + verdicts_html([r.row() for r in conf.results]))

# %% [markdown]
# ## First divergences, with the state around them
# The lanes show the steps before the divergence and the diverging step (hover a
# column for the call, its line in the trace and the model's outcome).

# %%
show(views.divergences_html(conf))

# %% [markdown]
# ## Coverage of ops and states

# %%
show(views.coverage_html(conf))

# %% [markdown]
# ## The kernel as the oracle
# The traces above record what a proposal's model or a selftest expects; here the running
# kernel answers instead. Each trace of `kernel_traces` runs on a KVM default VM through
# `kvm_device`, as `gmemlab kvm-run` does (guest_memfd bound at gpa 0, host accesses in a
# forked child, pins as io_uring buffers, guest accesses by a real-mode vCPU), until the
# first event a default VM cannot express (a conversion, a populate: the run stops there,
# and the row says why). Each event's kernel outcome is set beside the model's under
# platform `default`: a trace the kernel runs in whole or as a prefix is listed, with its
# events folded under it (runs of alike events are one row). Without /dev/kvm nothing
# runs and the section says so.

# %%
oracle = kernel.kernel_conformance(kernel_traces, device=kvm_device)
show(kernel.kernel_conformance_html(oracle))

# %% [markdown]
# ## Summary

# %%
results = views.conformance_data(conf)
results["kernel"] = kernel.kernel_conformance_data(oracle)
views.save_results(results_path, results)
show(pre(views.conformance_summary(conf) + "\n" + kernel.kernel_conformance_summary(oracle)))
