"""Showing what the model, the explorer and the replays found.

- text: 72-column ASCII for terminals and email (compare, explore, check-trace);
- graphs: state graphs through Graphviz's dot, or a pure-Python SVG without it;
- bounded: graph views built for a question, bounded in size at any page count;
- lanes: per-page memory-map timelines, as HTML and as text;
- html: tables, steps, verdicts, sources, and a kernel-free toggle;
- reply: the plain-text (and HTML) reply to the list;
- sources: where each proposal, invariant, series and knob comes from;
- views: one call per notebook view; widgets: ipywidgets panels (the "lab" extra).
"""
