"""`prefstream eval`: what a profile is worth to a downstream model, measured with the AlignXplore+ protocol.

One module per step: `data` (input files to cases), `splits` (which triples each step folds),
`runner` (profiles through the stream's own `PreferenceModel`, then judgments), `selection` (the
authors' selection prompt and the parsing of answers), `judges` (who answers), `checkpoint` (the
resumable run directory), `stats` (Wilson intervals), `report` (tables and plot), `synthetic` (users
with known tastes), `cli` (the commands). See docs/eval.md.
"""
