"""Robustness studies over many trainer runs; they consume the trainers' logs and adapter files.

``sweep.py`` (``delora-sweep``): learning-rate grids and prolonged runs, one ordinary trainer run per
point (``grid.py`` what to run, ``points.py`` how, ``records.py`` what it measured, ``evaluate.py``
optional DreamBooth metrics); ``report.py`` + ``plots.py`` (``delora-sweep report``): tables and
figures; ``norms.py`` (``delora-inspect-norms``): column norms of the attention projections.
"""
