"""What a data-blind function holds instead of data: frames and Contexts that only ask.

In a data-blind request (the default of ``rk.dp_request``) the function's argument is a
:class:`BlindFrame` (or, with ``context=True``, a :class:`BlindContext`). It knows the
public schema and nothing else. ``df["age"]`` is a :class:`BlindColumn`; comparisons
build row filters; the kit's helpers (``rk.dp.count/sum/mean/quantile/histogram/
fit_model``, ``rk.dp.ctx_*``) and ``ctx.query()...release()`` send one
:class:`~datasite.contract.release.ReleaseCall` each through a *channel* to the
releaser, which holds the data. What comes back is a released value, so whatever the
function does with it is post-processing.

>>> import pandas as pd
>>> from researcher_kit import dp
>>> mock = pd.DataFrame({"age": [25, 35, 45, 55] * 250, "smoker": [True, False] * 500})
>>> df = local_frames({"df": mock}, epsilon=1.0)["df"]
>>> df.columns
['age', 'smoker']
>>> older = df[df["age"] >= 40]
>>> 40 <= dp.mean(older["age"], bounds=(18, 90), epsilon=0.5) <= 56
True
>>> len(df)
Traceback (most recent call last):
...
TypeError: The number of rows is private here: release it with rk.dp.count(df, epsilon=...).
"""

from __future__ import annotations

import io
import socket
from collections.abc import Mapping
from typing import Any, Protocol

from datasite.contract.framing import read_message, write_message
from datasite.contract.release import REFUSALS, ReleaseCall
from datasite.contract.results import decode_result, encode_result

_PRIVATE = "{what} is private here: {how}"


#: What the job sees when the releaser process ended mid-call. It most often ran out of the
#: run's memory limit (a library that loads a whole column); the run is charged in full.
RELEASER_STOPPED = (
    "ReleaseFailed: the site's releaser stopped before it answered; a release that needs "
    "more memory than the run's limit ends this way (ask the owner for a larger limit, or "
    "use a release the site computes partition by partition: dp.count/sum/mean/histogram/"
    "quantile, ctx_count/ctx_sum/ctx_mean)"
)


class ReleaseError(RuntimeError):
    """A release the releaser refused or could not make; the message says which."""


class Channel(Protocol):
    """Carries one :class:`ReleaseCall` to a releaser and brings the value back."""

    def call(self, call: ReleaseCall) -> Any: ...


# -- encoding answers the same way on every channel ------------------------------------------


def encode_answer(value: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A released value as a message: Polars frames as Parquet, the rest as the result codec."""
    import polars as pl

    if isinstance(value, pl.DataFrame):
        sink = io.BytesIO()
        value.write_parquet(sink)
        return {"ok": True, "polars": "0.parquet"}, {"0.parquet": sink.getvalue()}
    manifest, blobs = encode_result(value)
    return {"ok": True, "manifest": manifest}, blobs


def decode_answer(header: dict[str, Any], blobs: dict[str, bytes]) -> Any:
    """The value of an answer, or the refusal as an exception with a fixed name."""
    if not header.get("ok"):
        name = header.get("error") if header.get("error") in REFUSALS else "ReleaseFailed"
        message = str(header.get("message") or "The release was refused.")[:2000]
        if name == "BudgetExceeded":
            from researcher_kit.dp.budget import BudgetExceeded

            raise BudgetExceeded(message)
        raise ReleaseError(f"{name}: {message}")
    if "polars" in header:
        import polars as pl

        return pl.read_parquet(io.BytesIO(blobs[header["polars"]]))
    return decode_result(header["manifest"], blobs)


def answer(releaser: Any, call_json: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """What a releaser answers to one call, as a message; refusals carry fixed names.

    Only refusals raised *before* the data is read carry their text (it speaks of the
    caller's own arguments); any other failure is ``ReleaseFailed`` with no detail.
    """
    from pydantic import ValidationError

    from researcher_kit.dp.budget import BudgetExceeded
    from researcher_kit.releaser import ReleaseRefused

    try:
        call = ReleaseCall.model_validate(call_json)
        return encode_answer(releaser.handle(call))
    except BudgetExceeded as exc:
        return {"ok": False, "error": "BudgetExceeded", "message": str(exc)}, {}
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return {"ok": False, "error": "ReleaseRefused", "message": problems[:1000]}, {}
    except ReleaseRefused as exc:
        return {"ok": False, "error": "ReleaseRefused", "message": str(exc)}, {}
    except Exception:  # noqa: BLE001 - anything else may speak of the data: no text
        return {"ok": False, "error": "ReleaseFailed", "message": "The release failed."}, {}


class LocalChannel:
    """A releaser in this process (the researcher's mock), answers encoded as on the site."""

    def __init__(self, releaser: Any) -> None:
        self.releaser = releaser

    def call(self, call: ReleaseCall) -> Any:
        header, blobs = answer(self.releaser, call.model_dump(mode="json", exclude_none=True))
        return decode_answer(header, blobs)


class SocketChannel:
    """The sandbox's end of the socket to the site's releaser process."""

    def __init__(self, fd: int) -> None:
        self._socket = socket.socket(fileno=fd)
        self._stream = self._socket.makefile("rwb", buffering=0)

    def call(self, call: ReleaseCall) -> Any:
        try:
            write_message(self._stream, call.model_dump(mode="json", exclude_none=True))
            header, blobs = read_message(self._stream)
        except (EOFError, OSError):
            raise ReleaseError(RELEASER_STOPPED) from None
        return decode_answer(header, blobs)


# -- the proxies -----------------------------------------------------------------------------


class BlindPredicate:
    """A row filter built from column comparisons; combine with ``&``, ``|``, ``~``."""

    def __init__(self, node: dict[str, Any]) -> None:
        self.node = node

    def __and__(self, other: BlindPredicate) -> BlindPredicate:
        return BlindPredicate({"and": [self.node, _node(other)]})

    def __or__(self, other: BlindPredicate) -> BlindPredicate:
        return BlindPredicate({"or": [self.node, _node(other)]})

    def __invert__(self) -> BlindPredicate:
        return BlindPredicate({"not": self.node})

    def __bool__(self) -> bool:
        raise TypeError(_PRIVATE.format(what="Whether a row matches", how="use df[predicate]."))

    def __repr__(self) -> str:
        return f"BlindPredicate({self.node})"


def _node(value: Any) -> dict[str, Any]:
    if isinstance(value, BlindPredicate):
        return value.node
    if isinstance(value, BlindColumn):
        return {"col": value.name}
    if value is None or type(value) in (int, float, str, bool):
        return {"lit": value}
    if hasattr(value, "item"):  # a NumPy scalar
        return {"lit": value.item()}
    raise TypeError(f"A filter compares columns with plain constants, not {type(value).__name__}.")


class _NoRows:
    """What every blind object refuses: its length, its values, any other attribute."""

    _what = "object"

    def __len__(self) -> int:
        raise TypeError(_count_hint())

    def __iter__(self) -> Any:
        raise TypeError(_values_hint())

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(_values_hint())

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"A data-blind {self._what} has no {name!r}: its rows stay on the site. Select "
            "columns (df['age']), filter rows (df[df['age'] > 40]) and release statistics "
            "with rk.dp (count, sum, mean, quantile, histogram)."
        )


class BlindColumn(_NoRows):
    """One column of a :class:`BlindFrame`: its name and type, no values."""

    _what = "column"

    def __init__(self, frame: BlindFrame, name: str) -> None:
        self.frame, self.name = frame, name

    @property
    def dtype(self) -> str:
        return self.frame.dtypes[self.name]

    def _compare(self, op: str, other: Any) -> BlindPredicate:
        return BlindPredicate({"cmp": op, "left": {"col": self.name}, "right": _node(other)})

    def __lt__(self, other: Any) -> BlindPredicate:
        return self._compare("<", other)

    def __le__(self, other: Any) -> BlindPredicate:
        return self._compare("<=", other)

    def __gt__(self, other: Any) -> BlindPredicate:
        return self._compare(">", other)

    def __ge__(self, other: Any) -> BlindPredicate:
        return self._compare(">=", other)

    def __eq__(self, other: Any) -> BlindPredicate:  # type: ignore[override]
        return self._compare("==", other)

    def __ne__(self, other: Any) -> BlindPredicate:  # type: ignore[override]
        return self._compare("!=", other)

    __hash__ = None  # type: ignore[assignment]

    def isin(self, values: Any) -> BlindPredicate:
        return BlindPredicate(
            {"isin": {"col": self.name}, "values": [_node(v)["lit"] for v in values]}
        )

    def isna(self) -> BlindPredicate:
        return BlindPredicate({"isnull": {"col": self.name}})

    isnull = isna

    def notna(self) -> BlindPredicate:
        return ~self.isna()

    notnull = notna

    def __repr__(self) -> str:
        return f"BlindColumn({self.name!r}, {self.dtype})"


def _count_hint() -> str:
    return _PRIVATE.format(
        what="The number of rows", how="release it with rk.dp.count(df, epsilon=...)."
    )


def _values_hint() -> str:
    return _PRIVATE.format(
        what="Row values", how="release statistics with rk.dp (count, sum, mean, ...)."
    )


class BlindFrame(_NoRows):
    """A table the function may query through DP releases but never read."""

    _what = "frame"

    def __init__(
        self,
        channel: Channel,
        table: str,
        dtypes: Mapping[str, str],
        where: dict[str, Any] | None = None,
    ) -> None:
        self.channel, self.table = channel, table
        self.dtypes = dict(dtypes)
        self.where = where

    @property
    def columns(self) -> list[str]:
        return list(self.dtypes)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, BlindPredicate):
            node = key.node if self.where is None else {"and": [self.where, key.node]}
            return BlindFrame(self.channel, self.table, self.dtypes, node)
        if isinstance(key, str):
            if key not in self.dtypes:
                raise KeyError(f"{key!r} is not a column; columns: {', '.join(self.dtypes)}")
            return BlindColumn(self, key)
        if isinstance(key, list) and all(isinstance(k, str) for k in key):
            missing = [k for k in key if k not in self.dtypes]
            if missing:
                raise KeyError(f"not columns: {', '.join(map(repr, missing))}")
            return BlindFrame(
                self.channel, self.table, {k: self.dtypes[k] for k in key}, self.where
            )
        raise TypeError("Index a data-blind frame by a column name, a list of names or a filter.")

    def release(self, call: ReleaseCall) -> Any:
        """Send one release about this frame's rows to the releaser."""
        return self.channel.call(
            call.model_copy(update={"table": self.table, "filter": self.where})
        )

    def __repr__(self) -> str:
        where = "" if self.where is None else f", filtered by {self.where}"
        return f"BlindFrame({self.table!r}, columns={self.columns}{where})"


def is_blind(data: Any) -> bool:
    """True for a blind frame or column: the kit's helpers then ask the releaser."""
    return isinstance(data, BlindFrame | BlindColumn)


def release_from(data: BlindFrame | BlindColumn, op: str, **fields: Any) -> Any:
    """Ask the releaser for ``op`` over a blind frame or column (``None`` fields dropped)."""
    frame, column = (data.frame, data.name) if isinstance(data, BlindColumn) else (data, None)
    given = {k: v for k, v in fields.items() if v is not None}
    return frame.release(ReleaseCall(op=op, column=column, **given))


def release_model(kind: str, X: Any, y: Any, **fields: Any) -> Any:
    """Ask the releaser to fit model ``kind`` on blind features ``X`` and target ``y``."""
    frame = X if isinstance(X, BlindFrame) else None
    if frame is None or not (y is None or isinstance(y, BlindColumn | BlindPredicate)):
        raise TypeError(
            "In a data-blind request, X is df[[feature columns]] and y is df[target] "
            "or a condition such as df['target'] > 140."
        )
    if isinstance(y, BlindColumn) and (y.frame.table, y.frame.where) != (frame.table, frame.where):
        raise ValueError("X and y must select the same rows of the same table.")
    params = {k: _plain(v) for k, v in fields.pop("params").items() if v is not None}
    call = ReleaseCall(
        op="fit_model", model=kind, features=frame.columns, params=params,
        target=y.name if isinstance(y, BlindColumn) else None,
        label=y.node if isinstance(y, BlindPredicate) else None, **fields,
    )  # fmt: skip
    return frame.release(call)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


class BlindContext:
    """What a Context request receives: ``query()`` builds, ``release()`` asks the site."""

    def __init__(self, channel: Channel, table: str, dtypes: Mapping[str, str]) -> None:
        self.channel, self.table, self.dtypes = channel, table, dict(dtypes)

    def query(self) -> BlindQuery:
        return BlindQuery(self, [])

    def __repr__(self) -> str:
        return f"BlindContext({self.table!r}, columns={list(self.dtypes)})"


class BlindQuery:
    """An OpenDP Context query recorded step by step and replayed by the releaser."""

    def __init__(self, context: BlindContext, steps: list[tuple[str, list[Any]]]) -> None:
        self.context, self.steps = context, steps

    def _then(self, step: str, arguments: tuple[Any, ...]) -> BlindQuery:
        return BlindQuery(self.context, [*self.steps, (step, [_argument(a) for a in arguments])])

    def select(self, *exprs: Any) -> BlindQuery:
        return self._then("select", exprs)

    def with_columns(self, *exprs: Any) -> BlindQuery:
        return self._then("with_columns", exprs)

    def filter(self, *predicates: Any) -> BlindQuery:
        return self._then("filter", predicates)

    def group_by(self, *keys: Any) -> BlindQuery:
        return self._then("group_by", keys)

    def agg(self, *exprs: Any) -> BlindQuery:
        return self._then("agg", exprs)

    def with_keys(self, keys: Any) -> BlindQuery:
        import polars as pl

        frame = keys.collect() if isinstance(keys, pl.LazyFrame) else pl.DataFrame(keys)
        return BlindQuery(
            self.context, [*self.steps, ("with_keys", [{"keys": frame.to_dict(as_series=False)}])]
        )

    def release(self, column: str | None = None, bounds: Any = None) -> Released:
        """Ask the site; ``column`` and ``bounds`` name a ``ctx_*`` helper's aggregate
        (the site checks them against the steps before it relies on them)."""
        call = ReleaseCall(
            op="context", table=self.context.table, steps=self.steps, column=column,
            bounds=bounds,
        )  # fmt: skip
        return Released(self.context.channel.call(call))


class Released:
    """A released Context answer; ``collect()`` gives the Polars DataFrame, as OpenDP's does."""

    def __init__(self, frame: Any) -> None:
        self.frame = frame

    def collect(self) -> Any:
        return self.frame


def _argument(value: Any) -> Any:
    import polars as pl

    if isinstance(value, str):
        return value
    if isinstance(value, pl.Expr):
        return {"expr": value.meta.serialize(format="json")}
    raise TypeError(
        f"A Context query step takes column names or Polars expressions, not {value!r}."
    )


# -- building the arguments ------------------------------------------------------------------


def blind_arguments(
    channel: Channel, tables: Mapping[str, Mapping[str, str]], context: bool
) -> dict[str, Any]:
    """The function's arguments: a BlindFrame (or BlindContext) per table, by argument name."""
    make = BlindContext if context else BlindFrame
    return {name: make(channel, name, dtypes) for name, dtypes in tables.items()}


def local_frames(
    tables: Mapping[str, Any],
    epsilon: float,
    delta: float = 0.0,
    *,
    context: bool = False,
    queries: int = 1,
    max_contributions: int = 1,
) -> dict[str, Any]:
    """Blind arguments over tables you hold (the mock), answered by an in-process releaser.

    The researcher's ``run_on_mock`` uses this, so a request meets on the mock exactly
    the proxies, refusals and odometer it meets on the site.
    """
    from researcher_kit.releaser import Releaser

    releaser = Releaser(
        tables, epsilon, delta, queries=queries, max_contributions=max_contributions
    )
    channel = LocalChannel(releaser)
    schemas = {name: releaser.schema(name) for name in tables}
    return blind_arguments(channel, schemas, context)
