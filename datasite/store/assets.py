"""Parquet asset files: streamed uploads, schema checks, and where each file lives.

Uploads are written to disk chunk by chunk as they arrive, so a million-row table never
sits in the server's memory; only the Parquet footer is read to learn its schema.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow.parquet as pq

from datasite.errors import UploadError, UploadTooLarge


async def receive_upload(chunks: AsyncIterator[bytes], uploads_dir: Path, max_bytes: int) -> str:
    """Write a streamed body to a new upload file and return its id.

    Raises ``UploadTooLarge`` (and leaves no file behind) when the body exceeds ``max_bytes``.
    """
    uploads_dir.mkdir(parents=True, exist_ok=True)
    upload_id = uuid.uuid4().hex
    path = uploads_dir / f"{upload_id}.parquet"
    size = 0
    try:
        with path.open("wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLarge(
                        f"The upload is larger than this site's limit of {max_bytes:,} bytes."
                    )
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return upload_id


def upload_path(uploads_dir: Path, upload_id: str) -> Path:
    if not upload_id.isalnum():
        raise UploadError(f"Unknown upload id {upload_id!r}.")
    path = uploads_dir / f"{upload_id}.parquet"
    if not path.is_file():
        raise UploadError(f"Unknown upload id {upload_id!r}; upload the table again.")
    return path


def describe_table(path: Path) -> tuple[list[dict[str, str]], int]:
    """The columns (name and Arrow type) and row count of a Parquet file, from its footer."""
    try:
        meta = pq.read_metadata(path)
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise UploadError(f"The uploaded table is not a readable Parquet file ({exc}).") from exc
    columns = [
        {"name": field.name, "dtype": str(field.type)}
        for field in schema
        if not field.name.startswith("__index_level_")
    ]
    return columns, meta.num_rows


def column_types(columns: list[dict[str, str]]) -> dict[str, str]:
    """Column name -> Arrow type, from the column list :func:`describe_table` gives (and
    an ``Asset`` keeps): the public schema a run's releaser answers.

    >>> column_types([{"name": "age", "dtype": "int64"}, {"name": "city", "dtype": "string"}])
    {'age': 'int64', 'city': 'string'}
    """
    return {c["name"]: c["dtype"] for c in columns}


def schema_mismatches(real: list[dict[str, str]], mock: list[dict[str, str]]) -> list[str]:
    """Human-readable differences between the real and the mock table's columns.

    >>> schema_mismatches([{"name": "age", "dtype": "int64"}], [{"name": "age", "dtype": "double"}])
    ["column 'age' is int64 in the real table but double in the mock"]
    """
    real_types, mock_types = column_types(real), column_types(mock)
    problems = [
        f"column '{n}' is only in the real table" for n in real_types if n not in mock_types
    ]
    problems += [
        f"column '{n}' is only in the mock table" for n in mock_types if n not in real_types
    ]
    problems += [
        f"column '{n}' is {t} in the real table but {mock_types[n]} in the mock"
        for n, t in real_types.items()
        if n in mock_types and mock_types[n] != t
    ]
    return problems
