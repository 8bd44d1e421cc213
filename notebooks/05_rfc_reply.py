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
# A reply to post on the list, as a reviewer would: plain ASCII, at most 72 columns
# (a link is never broken). It opens with a conclusion drawn from the results (which
# proposal keeps which invariants, which breaks which), then one finding per broken
# invariant: the seed's lines it answers, quoted, and its shortest counterexample as
# numbered calls, with the knobs it needs and the command that finds it. Then the
# matrix without the rows every proposal shares, and the sources (the seed, the
# proposals' messages, the series cover letter, the platform, the knobs) with
# lore.kernel.org links. An HTML version follows, with the counterexample's
# memory-map lanes. `gmemlab report` writes both (reply.txt, reply.html); `gmemlab
# reply` writes the text as an email for git send-email or mutt.

# %% tags=["parameters"]
platform = "snp"             # sw_protected | default | snp | tdx | cca
series = "v8"                # v5 | v7 | v8 | v13
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
# ## What a VMM can recover from
# The seed's argument against populate-converts is about information: populate would
# inherit conversion's failures while the platform ioctls cannot say where or why it
# stopped. Each proposal's reference VMM sees only what its calls return; it resumes
# partial progress, retries what the uAPI documents as transient and stops on anything
# else. Its counterexample marks what it cannot see as `[other]`; the table lists every
# failing outcome with the causes behind it, and "guessing" where they need different
# recoveries (docs/domain.md, "What a VMM can recover from").

# %%
show(views.recovery_html(platform, series, pages, knobs))

# %% [markdown]
# ## Summary

# %%
results = views.reply_data(text, html, platform, series, pages, knobs, proposal, invariant)
results["recovery"] = views.recovery_data(platform, series, pages, knobs)
views.save_results(results_path, results)
show(pre(views.reply_summary(results)))
