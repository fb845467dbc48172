"""Checking a ``safetensors`` blob without loading it: the only way tensors cross a boundary.

Model weights travel as safetensors (an 8-byte little-endian header length, a JSON header
of ``{name: {dtype, shape, data_offsets}}``, then the raw bytes): data, never code. This
module reads the header with the standard library only, so the server can refuse a
malformed or oversized blob (a pickle, a header that points outside the buffer, an
unexpected dtype) before anything else touches it, and the contract stays free of torch.

>>> import json, struct
>>> header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
>>> blob = struct.pack("<Q", len(header)) + header + bytes(8)
>>> check_safetensors(blob)
{'w': ('F32', (2,))}
>>> check_safetensors(b"\\x80\\x04\\x95...pickle")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: the weights are not a safetensors blob: ...
"""

from __future__ import annotations

import json
import math
import struct

#: dtypes weights may have, and their size in bytes.
DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4}
MAX_WEIGHT_BYTES = 4 * 1024**2
MAX_TENSORS = 256
MAX_HEADER = 64 * 1024


def check_safetensors(blob: bytes, max_bytes: int = MAX_WEIGHT_BYTES) -> dict[str, tuple]:
    """``{name: (dtype, shape)}`` of a well-formed safetensors blob, or ``ValueError``."""
    if not isinstance(blob, bytes | bytearray):
        raise ValueError("the weights are not a safetensors blob: not bytes")
    if len(blob) > max_bytes:
        raise ValueError(f"the weights are {len(blob)} bytes; at most {max_bytes} are taken")
    if len(blob) < 8:
        raise ValueError("the weights are not a safetensors blob: too short")
    (length,) = struct.unpack("<Q", blob[:8])
    if length > MAX_HEADER or 8 + length > len(blob):
        raise ValueError("the weights are not a safetensors blob: bad header length")
    try:
        header = json.loads(bytes(blob[8 : 8 + length]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("the weights are not a safetensors blob: the header is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError("the weights are not a safetensors blob: the header is not an object")
    header.pop("__metadata__", None)
    if len(header) > MAX_TENSORS:
        raise ValueError(f"the weights hold more than {MAX_TENSORS} tensors")
    data = len(blob) - 8 - length
    found: dict[str, tuple] = {}
    spans = []
    for name, entry in header.items():
        if not (
            isinstance(entry, dict)
            and set(entry) == {"dtype", "shape", "data_offsets"}
            and entry["dtype"] in DTYPES
            and isinstance(entry["shape"], list)
            and all(type(d) is int and d >= 0 for d in entry["shape"])
            and isinstance(entry["data_offsets"], list)
            and len(entry["data_offsets"]) == 2
            and all(type(o) is int for o in entry["data_offsets"])
        ):
            raise ValueError(f"the weights are not a safetensors blob: bad entry {name!r}")
        start, end = entry["data_offsets"]
        size = math.prod(entry["shape"]) * DTYPES[entry["dtype"]]
        if not 0 <= start <= end <= data or end - start != size:
            raise ValueError(f"the weights are not a safetensors blob: {name!r} is out of range")
        spans.append((start, end))
        found[name] = (entry["dtype"], tuple(entry["shape"]))
    spans.sort()
    if any(a[1] > b[0] for a, b in zip(spans, spans[1:], strict=False)):
        raise ValueError("the weights are not a safetensors blob: tensors overlap")
    return found
