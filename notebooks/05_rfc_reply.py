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
# # 05 - The reply to the list
#
# ## Overview
# A block to paste into a reply on the list: plain ASCII, at most 72 columns, with the
# comparison matrix of the three proposals, one counterexample as numbered calls, the
# command that reproduces it, and the sources (the seed message, the proposals'
# messages, the series cover letter and its Message-Id, the platform, the knobs). An
# HTML version follows, with the counterexample's memory-map lanes. `gmemlab report`
# writes both (reply.txt, reply.html).

# %% tags=["parameters"]
platform = "snp"             # sw_protected | snp | tdx
series = "v8"                # v5 | v7 | v8
pages = 1                    # pages of the guest_memfd
proposal = ""                # the counterexample proposal; empty: the first that breaks one
invariant = ""               # the invariant; empty: the first it breaks
knobs = []                   # knob names (gmemlab.model.vocab.KNOBS), e.g. ["huge_folios"]
variants = []                # files of proposal variants to load, as `gmemlab --variants`
results_path = ""            # where to write the results as JSON (papermill, the report)

# %%
from gmemlab.render import views
from gmemlab.render.html import pre, show

views.load_variants(variants)
text, html = views.reply(platform, series, pages, knobs, proposal, invariant)

# %% [markdown]
# ## Plain text (paste into the reply)

# %%
show(pre(text))

# %% [markdown]
# ## HTML

# %%
show(html)

# %% [markdown]
# ## Summary

# %%
results = views.reply_data(text, html, platform, series, pages, knobs, proposal, invariant)
views.save_results(results_path, results)
show(pre(views.reply_summary(results)))
