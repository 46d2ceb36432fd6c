"""Run candidates on the GPU: the correctness wall, timing and fault isolation.

Modules (only :mod:`~kernelpro.runner.device` imports CuPy, and only when used):

* :mod:`~kernelpro.runner.evaluate` — :class:`Evaluator`, the entry point: compile, SASS check, the wall
  in a supervised worker, sanitizers → :class:`~kernelpro.runner.records.WallVerdict`
* :mod:`~kernelpro.runner.commands` — ``kernelpro bench`` / ``kernelpro check``
* :mod:`~kernelpro.runner.wall` — the checks, against any :mod:`~kernelpro.runner.backend`
* :mod:`~kernelpro.runner.timing`, :mod:`~kernelpro.runner.stats`, :mod:`~kernelpro.runner.nvml` — timing
* :mod:`~kernelpro.runner.inputs`, :mod:`~kernelpro.runner.buffers`, :mod:`~kernelpro.runner.compare` —
  seeded inputs, poisoned/guarded buffers, the tolerance rule
* :mod:`~kernelpro.runner.supervisor`, :mod:`~kernelpro.runner.worker`, :mod:`~kernelpro.runner.jobs` —
  the worker process and its watchdog
* :mod:`~kernelpro.runner.bounds`, :mod:`~kernelpro.runner.sanitizer`, :mod:`~kernelpro.runner.records`
"""
