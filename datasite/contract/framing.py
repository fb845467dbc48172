"""Length-prefixed JSON + raw-bytes messages: the only format between sandbox processes.

Every hop (executor <-> warm worker, sandboxed child -> worker, Dask task -> client)
speaks this format, so nothing is ever pickled. A message is::

    4-byte big-endian header length | header (UTF-8 JSON object) | blob bytes ...

The header lists its blobs as ``"blobs": [[name, size], ...]``; their bytes follow in
that order. ``pack`` / ``unpack_all`` work on bytes, ``write_message`` /
``read_message`` on file objects.

>>> data = pack({"event": "hello"}, {"a.bin": b"xyz"})
>>> [(header["event"], blobs) for header, blobs in unpack_all(data)]
[('hello', {'a.bin': b'xyz'})]
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from typing import IO, Any

from datasite.contract.job import JobResult

_LENGTH = struct.Struct(">I")
MAX_HEADER_BYTES = 16 * 1024**2
_BLOB_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class WireError(ValueError):
    """A message that does not follow the format (truncated, oversized, malformed)."""


def pack(header: dict[str, Any], blobs: dict[str, bytes] | None = None) -> bytes:
    """One message as bytes; ``header`` must not already carry a ``blobs`` key."""
    blobs = blobs or {}
    for name in blobs:
        check_blob_name(name)
    body = json.dumps({**header, "blobs": [[n, len(b)] for n, b in blobs.items()]}).encode()
    return b"".join([_LENGTH.pack(len(body)), body, *blobs.values()])


def check_blob_name(name: str) -> str:
    """Blob names become file names on the server: keep them plain."""
    if not isinstance(name, str) or not _BLOB_NAME.match(name) or ".." in name:
        raise WireError(f"Invalid blob name {name!r}.")
    return name


def _parse_header(body: bytes) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    try:
        header = json.loads(body)
        listed = [(check_blob_name(n), int(s)) for n, s in header.pop("blobs", [])]
    except (ValueError, TypeError) as exc:
        raise WireError(f"Malformed message header: {exc}") from None
    if not isinstance(header, dict) or any(size < 0 for _, size in listed):
        raise WireError("Malformed message header.")
    return header, listed


def unpack_all(data: bytes) -> Iterator[tuple[dict[str, Any], dict[str, bytes]]]:
    """Every message in ``data``, in order; raises ``WireError`` on a torn message."""
    view, pos = memoryview(data), 0
    while pos < len(data):
        if pos + _LENGTH.size > len(data):
            raise WireError("Truncated message length.")
        (length,) = _LENGTH.unpack_from(view, pos)
        pos += _LENGTH.size
        if length > MAX_HEADER_BYTES or pos + length > len(data):
            raise WireError("Truncated or oversized message header.")
        header, listed = _parse_header(bytes(view[pos : pos + length]))
        pos += length
        blobs: dict[str, bytes] = {}
        for name, size in listed:
            if pos + size > len(data):
                raise WireError(f"Truncated blob {name!r}.")
            blobs[name] = bytes(view[pos : pos + size])
            pos += size
        yield header, blobs


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if data is None or len(data) != size:
        raise EOFError("The other side closed the channel mid-message.")
    return data


def read_message(
    stream: IO[bytes], max_blob_bytes: int | None = None
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Read one message; ``EOFError`` if the stream ended cleanly before it."""
    first = stream.read(_LENGTH.size)
    if not first:
        raise EOFError("The channel is closed.")
    if len(first) != _LENGTH.size:
        raise EOFError("The other side closed the channel mid-message.")
    (length,) = _LENGTH.unpack(first)
    if length > MAX_HEADER_BYTES:
        raise WireError("Oversized message header.")
    header, listed = _parse_header(_read_exactly(stream, length))
    total = sum(size for _, size in listed)
    if max_blob_bytes is not None and total > max_blob_bytes:
        raise WireError(f"Message blobs of {total} bytes exceed {max_blob_bytes}.")
    return header, {name: _read_exactly(stream, size) for name, size in listed}


def write_message(
    stream: IO[bytes], header: dict[str, Any], blobs: dict[str, bytes] | None = None
) -> None:
    """Write one message and flush it."""
    stream.write(pack(header, blobs))
    stream.flush()


def result_message(result: JobResult) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A JobResult as a message: its JSON (without blobs) in the header, blobs after."""
    body = result.model_dump(mode="json", exclude={"blobs"})
    return {"event": "result", "result": body}, result.blobs


def result_from_message(header: dict[str, Any], blobs: dict[str, bytes]) -> JobResult:
    """The inverse of ``result_message``."""
    return JobResult.model_validate({**header["result"], "blobs": blobs})
