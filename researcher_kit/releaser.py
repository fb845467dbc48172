"""The trusted releaser: holds the data and the odometer, answers release calls with site code.

Data-blind requests never see a row. Each DP release they ask for (see
``datasite.contract.release``) is performed here, by the kit's own helpers and OpenDP,
on the tables this object holds. The same class serves the site (in a process of its
own, next to the sandbox, over a socket) and the researcher's notebook (in-process, on
the mock), so a request behaves the same in both places.

Guarantees this class keeps, whoever calls it:

- the privacy unit (``max_contributions``) is the site's, never the caller's;
- the odometer: the releases together never spend more than the declared
  ``(epsilon, delta)``; a call that would is refused with ``BudgetExceeded`` and
  releases nothing;
- filters, columns and model parameters are checked before any data is read, so a
  refusal carries only the caller's own inputs back;
- only the columns a release needs are read.

>>> import pandas as pd
>>> from datasite.contract.release import ReleaseCall
>>> table = pd.DataFrame({"age": [30, 40, 50, 60] * 250})
>>> releaser = Releaser({"df": table}, epsilon=1.0)
>>> n = releaser.handle(ReleaseCall(op="count", table="df", epsilon=0.5))
>>> abs(n - 1000) < 60
True
>>> releaser.handle(ReleaseCall(op="count", table="df", epsilon=0.6))
Traceback (most recent call last):
...
researcher_kit.dp.budget.BudgetExceeded: epsilon=0.6 exceeds what is left (epsilon=0.5, delta=0)
>>> round(releaser.spent.epsilon, 6)
0.5
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from datasite.contract.harness import build_context
from datasite.contract.release import (
    CONTEXT_STEPS,
    ReleaseCall,
    check_filter,
    filter_columns,
)
from researcher_kit.dp.budget import Budget
from researcher_kit.dp.partitioned import Mapper, PartitionedTable, Scan, exact
from researcher_kit.dp.spend import SpendEntry, SpendLog, track
from researcher_kit.filters import mask

#: Estimator settings a model call may pass on (public, data-independent); the privacy
#: parameters (epsilon, bounds, norms, classes) go through the kit's named arguments.
MODEL_PARAMS = frozenset(
    {"C", "max_iter", "tol", "fit_intercept", "n_clusters", "n_components", "n_estimators",
     "max_depth", "centered", "whiten", "var_smoothing", "bounds", "data_norm", "bounds_y",
     "classes"}
)  # fmt: skip
#: The Polars plugin functions OpenDP 0.16 registers (``opendp.extras.polars``).
OPENDP_PLUGINS = frozenset(
    {"dp_count", "dp_frame_len", "dp_len", "dp_mean", "dp_median", "dp_n_unique",
     "dp_null_count", "dp_quantile", "dp_sum", "noise"}
)  # fmt: skip
_DENIED_EXPR_KEYS = ("anonymous", "python", "udf", "pickle", "map", "opaque", "renamealias")


class ReleaseRefused(ValueError):
    """The call is not one the releaser performs (bad column, filter, parameter or step)."""


#: A table: a Parquet file or partition folder (path), an open Parquet file, a
#: partitioned table (the site's releaser opens its inputs before it gives up root), or a
#: DataFrame (the researcher's mock).
TableSource = str | Path | BinaryIO | PartitionedTable | pd.DataFrame


class Releaser:
    """Answers :class:`ReleaseCall` s on ``tables`` within ``(epsilon, delta)``.

    ``schemas`` gives tables' public columns (name -> Arrow type, the mock's): those are
    answered and checked against without opening the table; the others' are read from it.
    """

    def __init__(
        self,
        tables: Mapping[str, TableSource],
        epsilon: float,
        delta: float = 0.0,
        *,
        queries: int = 1,
        max_contributions: int = 1,
        mapper: Mapper | None = None,
        schemas: Mapping[str, dict[str, str]] | None = None,
    ) -> None:
        self.tables = {
            name: PartitionedTable.from_folder(source, mapper)
            if isinstance(source, str | Path) and Path(source).is_dir()
            else source
            for name, source in tables.items()
        }
        self.budget = Budget(epsilon=epsilon, delta=delta)
        self.epsilon, self.delta = epsilon, delta
        self.queries = queries
        self.max_contributions = max_contributions
        self.spent = SpendLog()
        self._contexts: dict[str, Any] = {}
        self._schemas = {name: dict(s) for name, s in (schemas or {}).items() if name in tables}

    # -- the public schema ---------------------------------------------------------------

    def schema(self, table: str) -> dict[str, str]:
        """Column names and types (public: the mock has the same); read once per table."""
        if table not in self._schemas:
            source = self._source(table)
            if isinstance(source, pd.DataFrame):
                found = {str(c): str(t) for c, t in source.dtypes.items()}
            else:
                import pyarrow.parquet as pq

                partitioned = isinstance(source, PartitionedTable)
                arrow = source.schema() if partitioned else pq.read_schema(source)
                found = {name: str(arrow.field(name).type) for name in arrow.names}
            self._schemas[table] = found
        return self._schemas[table]

    def _source(self, table: str) -> TableSource:
        if table not in self.tables:
            raise ReleaseRefused(f"there is no table {table!r}; tables: {', '.join(self.tables)}")
        return self.tables[table]

    # -- answering -------------------------------------------------------------------------

    def handle(self, call: ReleaseCall) -> Any:
        """Perform one release (or refuse it) and return the released value."""
        if call.op == "schema":
            return self.schema(call.table)
        with track() as log:
            value = getattr(self, f"_{call.op}")(call)
        self.spent.entries.extend(_with_released(log.entries, value))
        return value

    def _needed(self, call: ReleaseCall, wanted: list[str]) -> list[str]:
        """The columns a release reads (``wanted`` and the filter's), checked first."""
        if call.filter is not None:
            try:
                check_filter(call.filter)
            except ValueError as exc:
                raise ReleaseRefused(str(exc)) from None
        known = self.schema(call.table)
        needed = list(dict.fromkeys([*wanted, *sorted(filter_columns(call.filter))]))
        unknown = [c for c in needed if c not in known]
        if unknown:
            raise ReleaseRefused(f"unknown column(s) {', '.join(map(repr, unknown))}")
        return needed

    def _columns(self, call: ReleaseCall, wanted: list[str]) -> pd.DataFrame:
        """The rows ``call.filter`` keeps, with only the ``wanted`` columns (read lazily)."""
        needed = self._needed(call, wanted)
        source = self._source(call.table)
        if isinstance(source, pd.DataFrame):
            frame = source[needed] if needed else pd.DataFrame(index=source.index)
        elif isinstance(source, PartitionedTable):
            frame = source.read(needed)
        elif needed:
            frame = pd.read_parquet(source, columns=needed)
        else:  # a count without columns: the row count from the file's metadata, as rows
            import pyarrow.parquet as pq

            frame = pd.DataFrame(index=pd.RangeIndex(pq.ParquetFile(source).metadata.num_rows))
        if call.filter is not None:
            frame = frame.loc[mask(call.filter, frame)]
        return frame

    def _data(self, call: ReleaseCall, column: str | None) -> Any:
        """What an aggregate helper reads: the (filtered) column, the rows when ``column``
        is None, or, for a partitioned table, a handle the helper scans partition by
        partition without loading the table."""
        source = self._source(call.table)
        if isinstance(source, PartitionedTable):
            self._needed(call, [column] if column else [])
            return source.column(column, call.filter)
        frame = self._columns(call, [column] if column else [])
        return frame[column] if column else frame

    def _column(self, call: ReleaseCall) -> Any:
        if not call.column:
            raise ReleaseRefused(f"{call.op} needs a column")
        return self._data(call, call.column)

    def _kit(self) -> Any:
        from researcher_kit import dp

        return dp

    def _common(self, call: ReleaseCall) -> dict[str, Any]:
        return {
            "epsilon": call.epsilon,
            "budget": self.budget,
            "max_contributions": self.max_contributions,
        }

    def _count(self, call: ReleaseCall) -> int:
        data = self._data(call, call.column)
        return self._kit().count(
            data, mechanism=call.mechanism, delta=call.delta, **self._common(call)
        )

    def _bounds(self, call: ReleaseCall) -> tuple[Any, Any]:
        if call.bounds is None:
            raise ReleaseRefused(f"{call.op} needs public bounds=(lower, upper)")
        return call.bounds

    def _sum(self, call: ReleaseCall) -> float:
        return self._kit().sum(
            self._column(call), self._bounds(call), mechanism=call.mechanism, delta=call.delta,
            **self._common(call),
        )  # fmt: skip

    def _mean(self, call: ReleaseCall) -> float:
        return self._kit().mean(
            self._column(call), self._bounds(call), mechanism=call.mechanism, delta=call.delta,
            **self._common(call),
        )  # fmt: skip

    def _quantile(self, call: ReleaseCall) -> float:
        if call.alpha is None:
            raise ReleaseRefused("quantile needs alpha")
        return self._kit().quantile(
            self._column(call), call.alpha, self._bounds(call), candidates=call.candidates,
            **self._common(call),
        )  # fmt: skip

    def _histogram(self, call: ReleaseCall) -> pd.Series:
        if (call.categories is None) == (call.bins is None):
            raise ReleaseRefused("histogram needs exactly one of categories=[...] or bins=[...]")
        return self._kit().histogram(
            self._column(call), categories=call.categories, bins=call.bins,
            mechanism=call.mechanism, delta=call.delta, **self._common(call),
        )  # fmt: skip

    def _fit_model(self, call: ReleaseCall) -> bytes:
        if not call.model or not call.features:
            raise ReleaseRefused("fit_model needs a model and feature columns")
        refused = sorted(set(call.params) - MODEL_PARAMS)
        if refused:
            raise ReleaseRefused(f"fit_model does not take {', '.join(refused)}")
        for key, value in call.params.items():
            if not _plain_json(value):
                raise ReleaseRefused(f"fit_model parameter {key!r} must be plain numbers/lists")
        if call.label is not None:
            try:
                check_filter(call.label)
            except ValueError as exc:
                raise ReleaseRefused(str(exc)) from None
        label_columns = sorted(filter_columns(call.label))
        wanted = [*call.features, *([call.target] if call.target else []), *label_columns]
        frame = self._columns(call, list(dict.fromkeys(wanted)))
        X = frame[call.features].to_numpy(dtype=float)
        if call.label is not None:
            y = mask(call.label, frame).astype(int)
        else:
            y = frame[call.target].to_numpy() if call.target else None
        params = {k: tuple(v) if k in ("bounds", "bounds_y") and isinstance(v, list) else v
                  for k, v in call.params.items()}  # fmt: skip
        return self._kit().fit_model(
            call.model, X, y, epsilon=call.epsilon, budget=self.budget, **params
        )

    def _privatize_text(self, call: ReleaseCall) -> pd.Series:
        """Metric-DP word replacement of a whole text column (``rk.dp.privatize_text``).

        The odometer is charged for what one document composes to before the column is
        read. No filter: the released length would be the exact size of the subset. The
        rows come back in a random order with a fresh index (they link to nothing else).
        """
        from researcher_kit.dp import text

        if call.filter is not None:
            raise ReleaseRefused("privatize_text releases a whole column: no row filter")
        if not call.column or call.epsilon is None or call.epsilon <= 0:
            raise ReleaseRefused("privatize_text needs a text column and epsilon > 0")
        unit, oov = call.unit or "word", call.oov or "sample"
        max_words = call.max_words or text.DEFAULT_MAX_WORDS
        vocabulary = call.vocabulary or text.DEFAULT_VOCABULARY
        try:
            _, charge = text.composed_epsilon(call.epsilon, unit, max_words)
        except ValueError as exc:
            raise ReleaseRefused(str(exc)) from None
        self.budget.spend(charge)  # BudgetExceeded before any data is read
        column = self._data(call, call.column)  # a partitioned one: file by file, in parallel
        released = text.privatize_text(
            column, call.epsilon, unit=unit, oov=oov, max_words=max_words,
            vocabulary=vocabulary,
        )  # fmt: skip
        import secrets

        order = np.random.Generator(np.random.PCG64DXSM(secrets.randbits(128)))
        shuffled = released.to_numpy()[order.permutation(len(released))]
        return pd.Series(shuffled, name=call.column, dtype=object)

    def _synthesize(self, call: ReleaseCall) -> pd.DataFrame:
        """A DP synthetic table (``rk.dp.synthesize``) of ``call.features`` (or every column).

        The columns' kinds, bounds and categories are checked on the public schema and the
        odometer is charged before any data is read.
        """
        from researcher_kit.dp import synthetic

        known = self.schema(call.table)
        columns = list(call.features or known)
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise ReleaseRefused(f"unknown column(s) {', '.join(map(repr, unknown))}")
        if call.epsilon is None or call.epsilon <= 0:
            raise ReleaseRefused("synthesize needs epsilon > 0")
        settings = {
            "bounds": call.column_bounds, "public_categories": call.public_categories,
        }  # fmt: skip
        try:
            kinds = synthetic.plan_columns(
                {c: known[c] for c in columns}, delta=call.delta, **settings
            )
        except ValueError as exc:
            raise ReleaseRefused(str(exc)) from None
        needs_delta = any(
            k == "categorical" and c not in (call.public_categories or {}) for c, k in kinds.items()
        )
        self.budget.spend(call.epsilon, call.delta if needs_delta else 0.0)  # before reading
        frame = self._columns(call, columns)
        return synthetic.synthesize(
            frame, call.epsilon, delta=call.delta, synthesizer=call.synthesizer or "mst",
            rows=call.rows, bins=call.n_bins or 10, binning=call.binning or "uniform",
            max_contributions=self.max_contributions, **settings,
        )  # fmt: skip

    def _train_torch(self, call: ReleaseCall) -> dict[str, Any]:
        """A PyTorch model trained with Opacus's DP-SGD (``rk.dp.train_torch``).

        The architecture, settings and columns are checked and the accountant's spend is
        charged before any data is read (``researcher_kit.dp.deep``).
        """
        from researcher_kit.dp import deep

        if call.label is not None:
            try:
                check_filter(call.label)
            except ValueError as exc:
                raise ReleaseRefused(str(exc)) from None
        known = self.schema(call.table)
        try:
            plan = deep.plan_training(
                call.training or {}, list(call.features or []), call.epsilon, call.delta,
                self.max_contributions,
            )  # fmt: skip
        except deep.TrainingRefused as exc:
            raise ReleaseRefused(str(exc)) from None
        columns = [*plan.features, *([call.target] if call.target else [])]
        if (call.target is None) == (call.label is None):
            raise ReleaseRefused("train_torch needs exactly one of a target column or a label")
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise ReleaseRefused(f"unknown column(s) {', '.join(map(repr, unknown))}")
        if not all(_numeric(known[c]) for c in columns):
            raise ReleaseRefused("train_torch takes numeric feature and target columns")
        self.budget.spend(plan.epsilon, plan.delta)  # BudgetExceeded before any data is read
        frame = self._columns(call, list(dict.fromkeys([*columns, *filter_columns(call.label)])))
        X = frame[plan.features].to_numpy(dtype=float)
        if call.label is not None:
            y = mask(call.label, frame).astype(float)
        else:
            y = frame[call.target].to_numpy(dtype=float)
        result = deep.fit(plan, X, y)
        deep.record_training(plan, result)
        return result

    # -- Context queries -----------------------------------------------------------------

    def context(self, table: str) -> Any:
        """The OpenDP Context over ``table``, built once with the site's privacy unit."""
        if table not in self._contexts:
            import polars as pl

            source = self._source(table)
            if isinstance(source, pd.DataFrame):
                frame = pl.from_pandas(source).lazy()
            elif isinstance(source, PartitionedTable):  # lazy: OpenDP's plan scans the files
                frame = pl.scan_parquet(list(source.files))
            elif isinstance(source, str | Path):
                frame = pl.scan_parquet(source)
            else:  # an open file: OpenDP serializes the plan, so the rows go in memory
                source.seek(0)
                frame = pl.read_parquet(source).lazy()
            self._contexts[table] = build_context(
                frame,
                epsilon=self.epsilon,
                delta=self.delta,
                queries=self.queries,
                max_contributions=self.max_contributions,
            )
        return self._contexts[table]

    def _context(self, call: ReleaseCall) -> Any:
        from researcher_kit.dp.context import record_context_release

        ctx = self.context(call.table)
        query = ctx.query()
        for step, arguments in call.steps or []:
            if step not in CONTEXT_STEPS:
                raise ReleaseRefused(f"{step!r} is not a Context query step the site replays")
            query = getattr(query, step)(*[_argument(a) for a in arguments])
        source = self._source(call.table)
        kind = _scannable(call) if isinstance(source, PartitionedTable) else None
        if kind is None:
            return record_context_release(ctx, query, "context_query", None)
        return record_context_release(
            ctx, query, "context_query", None, answer=self._scanned(call, kind, source)
        )

    def _scanned(self, call: ReleaseCall, kind: str, source: PartitionedTable) -> Any:
        """How a count, sum or mean of a partitioned table is answered without OpenDP's
        plan loading the column whole: exact partials, partition by partition, then the
        noise OpenDP's resolved measurement names, added once to the combined values."""
        from researcher_kit.dp.context import answer_from_exact, typed_with_midpoint

        def exact_values() -> tuple[Any, int]:
            rows = source.num_rows()
            if kind == "count":
                return None, rows
            low, high, middle = typed_with_midpoint(call.bounds)  # type: ignore[arg-type]
            scan = Scan("mean", integer=isinstance(low, int), bounds=(low, high))
            clamped, present = exact(scan, source.column(call.column))
            return clamped + (rows - present) * middle, rows  # missing: the midpoint

        # The scan runs while OpenDP searches the noise scale (data-free, ~1 s): nothing
        # is released before the query is resolved and charged.
        pool = ThreadPoolExecutor(1)
        scanned = pool.submit(exact_values)
        pool.shutdown(wait=False)

        def answer(summary: Any) -> Any:
            total, rows = scanned.result()
            return answer_from_exact(kind, call.column, total, rows, summary)

        return answer


def _scannable(call: ReleaseCall) -> str | None:
    """Which ``ctx_*`` aggregate ``call`` is (``count``, ``sum``, ``mean``), if its steps are
    exactly that helper's expression for ``call.column`` and ``call.bounds``; else None.

    The column and bounds come from the researcher's code, so they are trusted only once
    the steps they would produce equal the steps sent (both through the same check).
    """
    import polars as pl

    from researcher_kit.dp.context import SCANNABLE, aggregate

    steps = call.steps or []
    if len(steps) != 1 or steps[0][0] != "select" or len(steps[0][1]) != 1:
        return None
    sent = steps[0][1][0]
    if not (isinstance(sent, dict) and isinstance(sent.get("expr"), str)):
        return None
    for kind in SCANNABLE:
        if (kind == "count") != (call.column is None and call.bounds is None):
            continue
        try:
            expected = aggregate(kind, call.column, call.bounds).meta.serialize(format="json")
        except (ValueError, TypeError, pl.exceptions.PolarsError):
            return None
        if checked_expression(expected) == checked_expression(sent["expr"]):
            return kind
    return None


def _numeric(dtype: str) -> bool:
    return any(word in dtype.lower() for word in ("int", "float", "double", "bool", "decimal"))


#: Helpers whose noise is added to the very value they return, so the entry's ``scale``
#: is that value's error; at most this many values are kept with the entry.
_NOISED_AS_RETURNED = frozenset({"count", "sum", "histogram"})
#: The Context queries whose one cell is a noised count or sum (OpenDP's summary names).
_ONE_NOISED_AGGREGATE = (["Frame Length"], ["Length"], ["Count"], ["Sum"])
_MAX_RELEASED = 1000


def _with_released(entries: list[SpendEntry], value: Any) -> list[SpendEntry]:
    """The ledger entry of a count, sum or histogram, or of a Context query of one noised
    count or sum, with the value it released (``details["released"]``): the site matches
    a run's returned outputs to it, and so to its noise scale, to draw error bars
    (``datasite.error_bars``). The value is a DP release already paid for; the site keeps
    it only where the function returned it.
    """
    if len(entries) != 1:
        return entries
    if entries[0].helper == "context_query":  # a Context query: one noised count or sum
        if entries[0].details.get("aggregates") not in _ONE_NOISED_AGGREGATE:
            return entries
        single = type(value).__module__.startswith("polars") and value.shape == (1, 1)
        value = value.item() if single else None
    elif entries[0].helper not in _NOISED_AS_RETURNED:
        return entries
    released = value.tolist() if isinstance(value, pd.Series) else value
    if isinstance(released, np.generic):
        released = released.item()
    plain = isinstance(released, int | float) and not isinstance(released, bool)
    listed = isinstance(released, list) and 0 < len(released) <= _MAX_RELEASED
    if not (plain or listed):
        return entries
    return [replace(entries[0], details={**entries[0].details, "released": released})]


def _plain_json(value: Any) -> bool:
    if value is None or type(value) in (int, float, str, bool):
        return True
    if type(value) in (list, tuple):
        return all(_plain_json(v) for v in value)
    return False


def _argument(argument: Any) -> Any:
    """One Context step argument: a column name, a checked Polars expression, or keys."""
    import polars as pl

    if isinstance(argument, str):
        return argument
    if isinstance(argument, dict) and set(argument) == {"expr"}:
        return pl.Expr.deserialize(io.StringIO(checked_expression(argument["expr"])), format="json")
    if isinstance(argument, dict) and set(argument) == {"keys"}:
        keys = argument["keys"]
        if not isinstance(keys, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and _plain_json(v) for k, v in keys.items()
        ):
            raise ReleaseRefused("with_keys takes {column: [values]}")
        return pl.LazyFrame(keys)
    raise ReleaseRefused("a Context step argument is a column name, an expression or keys")


def checked_expression(text: str) -> str:
    """A Polars expression (JSON) the releaser may deserialize, with OpenDP's own plugin path.

    Refused: Python functions of any kind (they travel pickled), plugins other than
    OpenDP's, anything that is not plain JSON. The plugin library path is replaced by
    the releaser's own, so a call can never make it load another library.

    >>> import polars as pl
    >>> checked_expression(pl.col("age").fill_null(1).meta.serialize(format="json"))[:24]
    '{"Function": {"input": ['
    >>> udf = pl.col("age").map_batches(lambda s: s).meta.serialize(format="json")
    >>> checked_expression(udf)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    researcher_kit.releaser.ReleaseRefused: the expression uses AnonymousFunction, ...
    """
    if not isinstance(text, str) or len(text) > 1_000_000:
        raise ReleaseRefused("an expression travels as Polars JSON text")
    try:
        tree = json.loads(text)
    except ValueError:
        raise ReleaseRefused("an expression travels as Polars JSON text") from None
    return json.dumps(_clean(tree))


def _clean(node: Any) -> Any:
    if isinstance(node, list):
        if len(node) > 64 and all(isinstance(x, int) for x in node):
            raise ReleaseRefused("the expression carries opaque bytes, which the site refuses")
        return [_clean(x) for x in node]
    if not isinstance(node, dict):
        return node
    for key in node:
        if any(word in key.lower() for word in _DENIED_EXPR_KEYS):
            raise ReleaseRefused(f"the expression uses {key}, which the site does not run")
    if "FfiPlugin" in node:
        plugin = node["FfiPlugin"]
        if not isinstance(plugin, dict) or plugin.get("symbol") not in OPENDP_PLUGINS:
            raise ReleaseRefused("the expression calls a plugin other than OpenDP's")
        kwargs = plugin.get("kwargs", [])
        if not (isinstance(kwargs, list) and all(isinstance(x, int) for x in kwargs)):
            raise ReleaseRefused("malformed plugin arguments")
        return {"FfiPlugin": {**plugin, "lib": opendp_plugin_path(), "kwargs": kwargs}}
    return {key: _clean(value) for key, value in node.items()}


_PLUGIN_PATH: list[str] = []


def opendp_plugin_path() -> str:
    """The library path OpenDP's own Polars plugins name on this machine."""
    if not _PLUGIN_PATH:
        import opendp.prelude as dp
        import polars as pl

        dp.enable_features("contrib")
        tree = json.loads(pl.len().dp.noise().meta.serialize(format="json"))
        _PLUGIN_PATH.append(_find_lib(tree))
    return _PLUGIN_PATH[0]


def _find_lib(node: Any) -> str:
    if isinstance(node, dict):
        if "FfiPlugin" in node:
            return node["FfiPlugin"]["lib"]
        for value in node.values():
            found = _find_lib(value)
            if found:
                return found
    if isinstance(node, list):
        for value in node:
            found = _find_lib(value)
            if found:
                return found
    return ""
