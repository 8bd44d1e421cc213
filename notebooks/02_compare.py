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
# # 02 - The proposals side by side
#
# ## Overview
# The three proposals for loading launch memory (private-first, populate-converts,
# userspace-converts; docs/domain.md "The three proposals") explored on the same
# platform, series, size and knobs. The matrix says, per proposal, how many states and
# transitions a fresh guest_memfd reaches, how many calls a launch needs, and for every
# invariant of docs/domain.md whether it holds (`holds*`: it holds because what it speaks of
# never happens) or the length of its shortest counterexample. The graph overlays the
# quotient state graphs (per page: KVM attribute x trusted-entity state) of the proposal
# in focus and the one it is compared against.
#
# The live panel needs a running kernel; the last section renders every series x
# proposal combination in advance, so the exported page still toggles without one.
# Every proposal, series, platform and knob cites its source under the matrix (hover an
# invariant's name for its claim and source).

# %% tags=["parameters"]
platform = "snp"                 # sw_protected | default | snp | tdx | cca
series = "v8"                    # v5 | v7 | v8 | v13
pages = 1                        # pages of the guest_memfd (1-3 stay interactive)
focus = "userspace-converts"     # the proposal in focus
against = "private-first"        # the proposal it is compared against
knobs = []                       # knob names (gmemlab.model.vocab.KNOBS), e.g. ["huge_folios"]
variants = []                    # files of proposal variants to load, as `gmemlab --variants`
precompute = True                # render every series x focus for the exported page
interactive = True               # show the live panel (ipywidgets); the report turns it off
engine = "auto"                  # graph drawing: auto (dot if installed) | dot | python
results_path = ""                # where to write the results as JSON (papermill, tests)

# %%
from gmemlab.render import views
from gmemlab.render.html import pre, show
from gmemlab.render.text import compare_text
from gmemlab.render.widgets import compare_panel

views.load_variants(variants)
table = views.comparison(platform, series, pages, knobs)

# %% [markdown]
# ## The live panel
# Change the proposal in focus, the baseline, the platform, the series, the size or a
# knob: the matrix and the graph difference follow. A new platform, series, size or
# knob explores anew, in the background: a progress bar counts the states against the
# estimate while the previous matrix stays on screen, dimmed, and the latest change wins.
# Every configuration is explored once; one seen already shows at once. An error is
# shown in the panel, with its class and message. The exported page has no kernel to run
# the panel: it shows a note instead, and the last section precomputes the views.

# %%
panel = compare_panel(platform=platform, series=series, pages=pages, focus=focus,
                      against=against, knobs=knobs, engine=engine)
panel if interactive else show('<p class="gml-interactive-off">The live panel needs a running kernel: open '
                               "this notebook in JupyterLab (make lab); the views below are precomputed.</p>")

# %% [markdown]
# ## The matrix as text
# The same comparison as `gmemlab compare` prints it (72 columns, for email).

# %%
show(pre(compare_text(table)))

# %% [markdown]
# ## Every series x proposal, precomputed
# For the exported page: each combination rendered in advance and switched by radio
# buttons and CSS alone (no kernel, no script). Empty when `precompute` is off.

# %%
show(views.precomputed_compare(platform, pages, knobs, focus=views.proposal_names(), against=against,
                               default=(series, focus), engine=engine) if precompute else "")

# %% [markdown]
# ## Summary
# What the matrix says, in numbers; the same values are written to `results_path`.

# %%
results = {"matrix": views.matrix_data(table), "panel": panel.data(), "precomputed": precompute}
views.save_results(results_path, results)
show(pre(views.matrix_summary(table, focus, against)))
