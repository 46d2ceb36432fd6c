"""Structural rewrites of a task's entry kernel, one family per module, beyond :mod:`kernelpro.transforms`.

Each rewrite has the transforms' contract: ``rewrite(source, kernel) -> Rewrite`` edits only the entry
kernel (plus, where needed, a small helper inserted just before it), and raises
:class:`~kernelpro.transforms.TransformError` saying why when it does not apply. Rewrites that change the
thread-to-work mapping also return the candidate's own launch (:mod:`kernelpro.rewrites.launch`).

- :mod:`~kernelpro.rewrites.vectorize`: 16-byte loads/stores for any element type (16-bit, ``typedef``'d).
- :mod:`~kernelpro.rewrites.shuffle_reduce`: shared-memory tree reduction → warp-shuffle reduction.
- :mod:`~kernelpro.rewrites.shuffle_scan`: shared-memory Hillis-Steele scan → warp-shuffle scan.
- :mod:`~kernelpro.rewrites.warp_per_row`: block-per-row → warp-per-row remap with a candidate launch.
- :mod:`~kernelpro.rewrites.thread_to_warp`: thread-per-row → warp-per-row remap with a candidate launch.
- :mod:`~kernelpro.rewrites.privatize`: byte-indexed histogram → shared-memory bins per block (own launch).
- :mod:`~kernelpro.rewrites.transpose`: naive transpose → padded shared-memory tile (own launch).
- :mod:`~kernelpro.rewrites.coarsen`: 2-D pointwise kernel → several rows per thread (own launch).
- :mod:`~kernelpro.rewrites.launch`: renders the ``/* kernelpro launch */`` block those remaps emit.
- :mod:`~kernelpro.rewrites.registry`: the order the offline proposer tries them in, and their skills.
"""
