"""What both sides agree on, and nothing else: it imports no other first-party package.

- ``job``: a sandbox job (``JobSpec``) and what comes back (``JobResult``).
- ``harness``: what trusted harnesses inside the sandbox share (their report, the
  arguments a function receives, the public row bound of a Context).
- ``results``: the result codec (JSON manifest + Parquet/skops blobs) and ``load_model``.
- ``framing``: length-prefixed JSON + bytes messages between processes.
- ``lifecycle``: request states and the transitions allowed between them.
- ``schemas``: the API's request and response bodies.
- ``tables``: the Parquet format of tables on disk and on the wire.

>>> from datasite.contract.results import decode_result, encode_result
>>> decode_result(*encode_result({"noisy_mean": 41.2}))
{'noisy_mean': 41.2}
"""
