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
# # 06 - A proposal of your own
#
# ## Overview
# The three proposals are data (gmemlab.model.proposals), so a designer can state a
# variant of one in a cell: a named, cited difference from a built-in
# (`Proposal.derive`, docs/variants.md). Registered with `gmemlab.register`, it is a
# proposal like the others: the explorer, the comparison, the widgets, the replies and
# every `--proposal` of the command line (`--variants FILE.py`) accept its name.
#
# The variant here is populate-converts, but populate's own conversion refuses a page
# with unexpected references (a pinned page) with EBUSY instead of the EAGAIN that
# KVM_SET_MEMORY_ATTRIBUTES2 answers. It is compared with the three built-ins on the
# same platform, series and size: states, invariants, error channels, and what differs
# from populate-converts. Whether the errno reaches userspace depends on the platform's
# populate ioctl, which is what the comparison shows.

# %% tags=["parameters"]
platform = "snp"                 # sw_protected | default | snp | tdx | cca
series = "v8"                    # v5 | v7 | v8 | v13
pages = 2                        # pages of the guest_memfd
knobs = []                       # knob names (gmemlab.model.vocab.KNOBS), e.g. ["huge_folios"]
variants = []                    # more files of proposal variants to load, as `gmemlab --variants`
engine = "auto"                  # graph drawing: auto (dot if installed) | dot | python
results_path = ""                # where to write the results as JSON (papermill, tests)

# %%
import gmemlab
from gmemlab.model.proposals import POPULATE_CONVERTS
from gmemlab.render import variants as V
from gmemlab.render import views
from gmemlab.render.html import pre, show

# %% [markdown]
# ## The variant
# `Proposal.derive(base, name=..., claim=..., source=..., **changes)`: the base's rules
# but for the changed fields, under a name of its own. `register` makes the name known
# (registering it again replaces it).

# %%
EBUSY = gmemlab.Proposal.derive(
    POPULATE_CONVERTS, name="populate-converts-ebusy",
    claim="populate converts, but refuses a pinned page with EBUSY instead of EAGAIN",
    source="a variant for the v8 review discussion (docs/variants.md)",
    populate_busy_errno="EBUSY")
gmemlab.register(EBUSY)
views.load_variants(variants)
show(V.variant_html(EBUSY.name))

# %% [markdown]
# ## Against the three built-ins
# The matrix of the built-ins and every registered variant, the variant in focus
# against the built-in it derives from (the error channels are under the matrix), and
# their quotient state graphs overlaid.

# %%
table = views.comparison(platform, series, pages, knobs)
show(views.compare_view(table, EBUSY.name, EBUSY.base, engine))

# %% [markdown]
# ## Summary
# States, invariants broken and populate's error channels of every proposal, and what
# the variant changes against its base; the same values are written to `results_path`.

# %%
results = V.variant_data(table, EBUSY.name)
views.save_results(results_path, results)
show(pre(V.variant_summary(results)))
