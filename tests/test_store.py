"""Parquet uploads: schema comparison and unreadable files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest

from datasite.store.assets import UploadError, describe_table, receive_upload, schema_mismatches


def test_describe_table_reads_only_the_footer(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}).to_parquet(path, index=False)
    columns, rows = describe_table(path)
    assert rows == 3
    assert [c["name"] for c in columns] == ["a", "b"]
    assert columns[0]["dtype"] == "int64"


def test_not_parquet_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    path.write_text("id,age\n1,2\n")
    with pytest.raises(UploadError, match="not a readable Parquet file"):
        describe_table(path)


def test_schema_mismatches_name_every_column() -> None:
    real = [
        {"name": "a", "dtype": "int64"},
        {"name": "b", "dtype": "string"},
        {"name": "c", "dtype": "double"},
    ]
    mock = [
        {"name": "a", "dtype": "double"},
        {"name": "c", "dtype": "double"},
        {"name": "d", "dtype": "int64"},
    ]
    assert schema_mismatches(real, mock) == [
        "column 'b' is only in the real table",
        "column 'd' is only in the mock table",
        "column 'a' is int64 in the real table but double in the mock",
    ]
    assert schema_mismatches(real, real) == []


def test_upload_over_the_limit_leaves_no_file(tmp_path: Path) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(5):
            yield b"x" * 1000

    with pytest.raises(UploadError, match="limit of 3,000 bytes"):
        asyncio.run(receive_upload(chunks(), tmp_path, max_bytes=3000))
    assert list(tmp_path.iterdir()) == []
    upload_id = asyncio.run(receive_upload(chunks(), tmp_path, max_bytes=10_000))
    assert (tmp_path / f"{upload_id}.parquet").stat().st_size == 5000
