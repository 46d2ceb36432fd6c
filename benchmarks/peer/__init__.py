"""Helpers of ``benchmarks/vs_kernel_tuner.py``: the peer comparison against Kernel Tuner.

- :mod:`peer.table`: the recorded knob-space table (one GPU sweep per task) and its JSON file.
- :mod:`peer.cachefile`: a Kernel Tuner cache file (JSON or gzipped) read directly as a table.
- :mod:`peer.sweep`: measures every configuration of a task through kernelpro's runner (GPU).
- :mod:`peer.metrics`: evaluations to within 5% of the optimum, best at a budget, median and IQR.
- :mod:`peer.kt`: the table as a Kernel Tuner cache file, and Kernel Tuner's strategies replayed on it.
- :mod:`peer.mcts_replay`: kernelpro's MCTS replayed on the table (its knob tuner doing every expansion).
- :mod:`peer.report`: runs every strategy for every seed (in parallel processes), scores kernelpro against
  Kernel Tuner's best strategy per table, and writes the Markdown and JSON report.

Kernel Tuner is a benchmark-only extra (``pip install 'kernelpro[bench]'``), never a runtime dependency.
"""
