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
# # 03 - Counterexamples
#
# ## Overview
# For every proposal and every invariant it breaks at this size, the shortest sequence
# of calls that breaks it (breadth-first exploration finds a shortest one), written
# three ways:
# - the steps as selftest-like calls with the model's outcome of each;
# - memory-map lanes: per page, after every step, the KVM attribute, the trusted
#   entity's state, the host page tables that map it, the pins on it and its contents
#   (`*` measured); the step at which the invariant breaks is marked;
# - the gmemlab-trace/1 file that replays it: save it and run
#   `gmemlab check-trace FILE --proposal P` (no_stuck_state is a property of the whole
#   graph: a replay shows the path to the stuck state, not the verdict).
# Each invariant cites the message or selftest behind it (gmemlab/invariants.py).
#
# Then the queries a reply asks for (docs/queries.md): per invariant, up to `distinct`
# counterexamples that differ in their violating call, those ending in an `ends_with`
# call, those passing a `through` state first; with `differ_from`, the ones whose
# calls do not break the invariant under that other proposal, both ways.

# %% tags=["parameters"]
platform = "snp"             # sw_protected | default | snp | tdx | cca
series = "v8"                # v5 | v7 | v8 | v13
pages = 1                    # pages of the guest_memfd
proposals = "all"            # "all" or a list, e.g. ["userspace-converts"]
knobs = []                   # e.g. ["refuse_unprepared_populate"]
invariant = ""               # queries: the invariant asked about; empty: each one broken
ends_with = ""               # queries: the violating call's op, e.g. host_read; empty: any
through = ""                 # queries: after_populate, after_finalize, pinned, host_mapped_private
distinct = 2                 # queries: how many, differing in their violating call
differ_from = ""             # queries: another proposal, e.g. private-first; empty: none
interactive = True           # show the live query panel (ipywidgets); the report turns it off
results_path = ""            # where to write the results as JSON (papermill, tests)

# %%
from gmemlab.render import views
from gmemlab.render.html import pre, show

names = list(views.PROPOSALS) if proposals == "all" else list(proposals)
found = {name: views.counterexamples(views.exploration(name, platform, series, pages, knobs))
         for name in names}

# %% [markdown]
# ## Counterexamples, proposal by proposal

# %%
show(views.counterexamples_html(found))

# %% [markdown]
# ## As text, for email
# The steps and lanes of each counterexample at 72 columns.

# %%
show(pre(views.counterexamples_text(found)))

# %% [markdown]
# ## Queries
# The question above each group; every answer is a shortest counterexample for what it
# asks, shown as the ones above (steps, lanes, trace file).

# %%
from gmemlab.render import query_views

answers = query_views.answers(names, platform, series, pages, knobs, invariant, ends_with, through,
                              distinct, differ_from)
show(query_views.answers_html(answers))

# %% [markdown]
# ### Ask interactively
# The same questions as controls (needs a running kernel to answer a change; the
# exported page shows a note instead).

# %%
from gmemlab.render.query_panel import query_panel

(query_panel(names, platform, series, pages, knobs) if interactive else
 show('<p class="gml-interactive-off">The live panel needs a running kernel: open this notebook in '
      "JupyterLab (make lab); the answers above are precomputed.</p>"))

# %% [markdown]
# ## Summary

# %%
results = views.counterexamples_data(found)
views.save_results(results_path, results)
show(pre(views.counterexamples_summary(found, platform, series, pages)))
