"""Tables on the wire and on disk: Parquet, written the fast way for numeric data.

PyArrow dictionary-encodes every column by default. For high-cardinality numbers (ids,
incomes, scores) that costs five times the write time and saves nothing, so only text,
binary, categorical and boolean columns, where repeats are the rule, keep dictionaries.

>>> import io, pandas as pd, pyarrow as pa, pyarrow.parquet as pq
>>> frame = pd.DataFrame({"age": [23, 45], "city": ["Oslo", "Oslo"]})
>>> sink = io.BytesIO()
>>> write_parquet(pa.Table.from_pandas(frame, preserve_index=False), sink)
>>> pq.read_table(io.BytesIO(sink.getvalue())).to_pandas().equals(frame)
True
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

#: Rows per row group: big enough for fast scans, small enough to read a part at a time.
ROW_GROUP_SIZE = 128 * 1024


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns worth dictionary-encoding: text, binary, categorical and boolean."""
    return [
        field.name
        for field in schema
        if pa.types.is_string(field.type)
        or pa.types.is_large_string(field.type)
        or pa.types.is_binary(field.type)
        or pa.types.is_dictionary(field.type)
        or pa.types.is_boolean(field.type)
    ]


def write_parquet(table: pa.Table, where: str | Path | IO[bytes]) -> None:
    """Write ``table`` as Parquet (snappy), dictionary-encoding only where it pays."""
    pq.write_table(
        table,
        where,
        row_group_size=ROW_GROUP_SIZE,
        use_dictionary=dictionary_columns(table.schema),
    )


#: Rows per partition file of a stored asset: one file is one unit of parallel work.
PARTITION_ROWS = 1024 * 1024
#: How many rows a streaming reader or writer holds in memory at once.
BATCH_ROWS = 128 * 1024


def partition_files(folder: str | Path) -> list[str]:
    """The partition files of a partitioned asset folder, in row order.

    >>> import tempfile, pyarrow as pa
    >>> folder = Path(tempfile.mkdtemp()) / "asset"
    >>> table = pa.table({"age": list(range(10))})
    >>> write_partitioned([table], folder, table.schema, rows_per_file=4)
    10
    >>> [Path(f).name for f in partition_files(folder)]
    ['part-00000.parquet', 'part-00001.parquet', 'part-00002.parquet']
    """
    return sorted(str(p) for p in Path(folder).glob("part-*.parquet"))


def write_partitioned(
    batches: Iterable[pa.RecordBatch | pa.Table],
    folder: str | Path,
    schema: pa.Schema,
    rows_per_file: int = PARTITION_ROWS,
) -> int:
    """Write a stream of batches as ``folder/part-NNNNN.parquet`` files; returns the rows.

    Each file holds at most ``rows_per_file`` rows in row groups of ``ROW_GROUP_SIZE``,
    with min/max statistics, so a reader can take one file per worker and skip row
    groups a filter excludes. Memory: one batch and one open writer, whatever the size.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=False)
    writer: pq.ParquetWriter | None = None
    in_file = total = files = 0
    try:
        for batch in batches:
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            offset = 0
            while offset < table.num_rows:
                if writer is None or in_file >= rows_per_file:
                    if writer is not None:
                        writer.close()
                    writer = _part_writer(folder, files, schema)
                    files, in_file = files + 1, 0
                take = min(rows_per_file - in_file, table.num_rows - offset)
                writer.write_table(table.slice(offset, take), row_group_size=ROW_GROUP_SIZE)
                offset, in_file, total = offset + take, in_file + take, total + take
        if writer is None:  # an empty table is one empty file, so its schema is kept
            writer = _part_writer(folder, 0, schema)
            writer.write_table(schema.empty_table())
    finally:
        if writer is not None:
            writer.close()
    return total


def _part_writer(folder: Path, index: int, schema: pa.Schema) -> pq.ParquetWriter:
    return pq.ParquetWriter(
        folder / f"part-{index:05d}.parquet", schema, use_dictionary=dictionary_columns(schema)
    )


def parquet_batches(
    source: str | Path, columns: list[str] | None = None, batch_rows: int = BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """The batches of a stored table (one Parquet file or a partition folder), in bounded
    memory: ``batch_rows`` rows of the ``columns`` asked for at a time."""
    import pyarrow.dataset as ds

    yield from ds.dataset(source, format="parquet").to_batches(
        columns=columns, batch_size=batch_rows
    )


def write_upload(source: Any, path: str | Path) -> None:
    """Write a table to upload as one Parquet file at ``path``, in bounded memory.

    ``source`` is a pandas DataFrame, the path of a ``.parquet`` or ``.csv`` file (read
    batch by batch, so it may be larger than memory), or an iterable of DataFrames (one
    chunk at a time, all with the same columns).

    >>> import tempfile, pandas as pd
    >>> out = Path(tempfile.mkdtemp()) / "up.parquet"
    >>> write_upload((pd.DataFrame({"age": [i, i + 1]}) for i in range(3)), out)
    >>> pq.read_table(out).num_rows
    6
    """
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        write_parquet(pa.Table.from_pandas(source, preserve_index=False), path)
        return
    if isinstance(source, str | Path):
        batches = _file_batches(Path(source))
    else:
        batches = (pa.Table.from_pandas(chunk, preserve_index=False) for chunk in source)
    writer: pq.ParquetWriter | None = None
    try:
        for batch in batches:
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            if writer is None:
                writer = pq.ParquetWriter(
                    path, table.schema, use_dictionary=dictionary_columns(table.schema)
                )
            elif table.schema != writer.schema:
                table = table.cast(writer.schema)  # a chunk whose types differ is refused here
            writer.write_table(table, row_group_size=ROW_GROUP_SIZE)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError("the table to upload has no rows and no columns")


def _file_batches(path: Path) -> Iterator[pa.RecordBatch]:
    if not path.is_file():
        raise FileNotFoundError(f"there is no file {path}")
    if path.suffix.lower() == ".csv":
        import pyarrow.csv as csv

        for batch in csv.open_csv(path):  # typed as a DataFrame upload of the same rows is
            yield pa.RecordBatch.from_pandas(batch.to_pandas(), preserve_index=False)
    elif path.suffix.lower() == ".parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS)
    else:
        raise ValueError(f"upload a .parquet or .csv file, not {path.name!r}")
