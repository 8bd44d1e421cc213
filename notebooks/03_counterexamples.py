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

# %% tags=["parameters"]
platform = "snp"             # sw_protected | snp | tdx
series = "v8"                # v5 | v7 | v8
pages = 1                    # pages of the guest_memfd
proposals = "all"            # "all" or a list, e.g. ["userspace-converts"]
knobs = []                   # e.g. ["refuse_unprepared_populate"]
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
# ## Summary

# %%
results = views.counterexamples_data(found)
views.save_results(results_path, results)
show(pre(views.counterexamples_summary(found, platform, series, pages)))
