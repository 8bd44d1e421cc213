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
# # 01 - The state space of one proposal
#
# ## Overview
# Every state that a fresh guest_memfd of `pages` pages can reach under one proposal,
# found breadth-first by `gmemlab explore`: from KVM_CREATE_GUEST_MEMFD (with and
# without INIT_SHARED) every call, access and guest event the model knows, with every
# argument the bounds allow. Shown below: the proposal and where it comes from, each
# invariant of docs/domain.md (held or broken, with its claim and source), then views
# built for a question, each bounded in size whatever `pages` is (docs/README.md,
# "Which graph answers which question"): the states clustered by launch progress (the
# whole graph while it is small), an interactive view to pan, zoom and search (live
# notebook only), quotients that fold the states by what the argument is about (KVM
# attribute x trusted-entity state; host access; launch progress), the launch and a
# counterexample step by step, the neighbourhood of one state, and one small graph per
# page. Red boxes are states in which some invariant fails; a thick border marks an
# initial state; a two-headed arrow stands for calls both ways. Hover a box or an
# arrow for its details.

# %% tags=["parameters"]
proposal = "private-first"   # private-first | populate-converts | userspace-converts
platform = "snp"             # sw_protected | default | snp | tdx | cca
series = "v8"                # v5 | v7 | v8 | v13
pages = 1                    # pages of the guest_memfd (every view stays readable at 1-3)
knobs = []                   # e.g. ["refuse_unprepared_populate"]
engine = "auto"              # graph drawing: auto (dot if installed) | dot | python
interactive = True           # the pan/zoom/search widget (ipysigma); the report turns it off
state = -1                   # the state whose neighbourhood is drawn (-1: where an invariant breaks)
results_path = ""            # where to write the results as JSON (papermill, tests)

# %%
from gmemlab.render import views
from gmemlab.render.html import pre, show

x = views.exploration(proposal, platform, series, pages, knobs)

# %% [markdown]
# ## The proposal and its invariants
# `holds*` means the invariant holds because what it speaks of never happens here
# (its paired "sometimes" property is unreachable); `BROKEN n` gives the length of the
# shortest counterexample (notebook 03 shows them).

# %%
show(views.proposal_html(proposal) + views.summary_html(x))

# %% [markdown]
# ## The whole graph
# One box per state (per page: S/P attribute, TE state, contents, and m measured,
# h host-mapped, p pinned; [fin] launch finalized) while that stays readable (a few
# dozen states); above, the states clustered by launch progress (finalized, pages
# measured, pages the TE holds), each box with its count.

# %%
show(views.full_graph_html(x, engine))

# %% [markdown]
# ## Interactive: pan, zoom, search
# Every state (or, above ten thousand, the launch-progress quotient) in a WebGL view:
# scroll to zoom, drag to pan, type in the search box to find a state by its label;
# colour by launch progress, size by degree. Needs a live kernel (the `lab` extra
# installs ipysigma); the exported report shows the static views only.

# %%
views.interactive_view(x, interactive)

# %% [markdown]
# ## Quotient: KVM attribute x trusted-entity state
# The two meanings of "private" (docs/domain.md; the seed message): a box folds every state
# whose pages agree on both. `S/valid` is a page the TE holds while KVM tracks it as
# shared, which te_private_implies_kvm_private forbids.

# %%
show(views.quotient_html(x, "attribute x TE", engine))

# %% [markdown]
# ## Quotient: KVM attribute x host access
# `h`: some host page table maps the page; `p`: it has an extra reference. `Ph` or `Pp`
# would break private_not_host_mapped or private_not_pinned.

# %%
show(views.quotient_html(x, "attribute x host access", engine))

# %% [markdown]
# ## Quotient: launch progress
# Attribute, TE state and `m` for a page the launch measured.

# %%
show(views.quotient_html(x, "launch progress", engine))

# %% [markdown]
# ## The launch and a counterexample, step by step
# One box per call: the call, its outcome, and every page after it (the lanes of
# notebook 03 as a path). The launch is the shortest one that finalizes with every page
# measured; the counterexample is the shortest for the first invariant that breaks.

# %%
show(views.paths_html(x, engine))

# %% [markdown]
# ## Around one state
# The state `state` (by default the first in which an invariant fails, highlighted),
# what leads to it and what follows it within one call, at most two dozen states.

# %%
show(views.neighbourhood_html(x, None if state < 0 else state, 1, engine))

# %% [markdown]
# ## Per page: small multiples
# One small graph per page: what that page goes through (attribute, TE state, `m`
# measured) and whether the launch is finalized. With symmetry the explorer keeps
# the pages sorted, so "page k" is the k-th in that order.

# %%
show(views.page_views_html(x, "launch progress", engine))

# %% [markdown]
# ## Summary
# The numbers behind the pictures (also written to `results_path`).

# %%
results = views.state_space_data(x)
views.save_results(results_path, results)
show(pre(views.state_space_summary(x)))
