"""The release protocol: what data-blind code may ask the trusted releaser, and nothing more.

A data-blind request (``RequestKind.BLIND`` or ``RequestKind.CONTEXT``) runs in a sandbox
that holds no private data. Every DP release it wants is one ``ReleaseCall`` sent over a
socket to the releaser, the process that holds the data and the request's privacy
odometer and runs only the site's own code. The answer is the released value (or a
refusal), so everything the function returns is a function of releases: DP by
construction.

Rows are picked with a *filter*, a small JSON tree rather than code, so the releaser
evaluates it itself::

    {"col": "age"}                                a column
    {"lit": 30}                                   a constant (number, string, bool, None)
    {"cmp": ">", "left": <node>, "right": <node>}  < <= > >= == !=
    {"and": [<node>, ...]}, {"or": [...]}, {"not": <node>}
    {"isin": <node>, "values": [...]}, {"isnull": <node>}

Filtering by a public predicate is 1-stable under add/remove, so it costs nothing.

>>> call = ReleaseCall(op="mean", table="df", column="age", bounds=(18, 90), epsilon=0.5)
>>> call.op, call.filter is None
('mean', True)
>>> check_filter({"and": [{"cmp": ">", "left": {"col": "age"}, "right": {"lit": 30}}]})
>>> check_filter({"call": "os.system"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: filter node {'call': 'os.system'} is not one of col, lit, cmp, and, or, not, ...
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Releases the releaser performs; each charges the odometer (``schema`` is free: the
#: column names and types are public, the mock has the same).
Op = Literal[
    "schema", "count", "sum", "mean", "quantile", "histogram", "fit_model", "context",
    "privatize_text", "synthesize", "train_torch",
]  # fmt: skip
COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
MAX_FILTER_DEPTH = 32
MAX_FILTER_NODES = 256
#: Context query steps the releaser replays on its own OpenDP Context.
CONTEXT_STEPS = ("select", "with_columns", "filter", "group_by", "agg", "with_keys")
#: Error names a refusal may carry to the sandbox: a fixed list, never text from the data.
REFUSALS = ("BudgetExceeded", "ReleaseRefused", "ReleaseFailed")


class ReleaseCall(BaseModel):
    """One request to the releaser. Unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    op: Op
    table: str = Field(default="", max_length=200)
    column: str | None = Field(default=None, max_length=200)
    filter: dict[str, Any] | None = None
    epsilon: float | None = Field(default=None, ge=0)
    delta: float | None = Field(default=None, ge=0, lt=1)
    mechanism: Literal["laplace", "gaussian"] = "laplace"
    bounds: tuple[int | float, int | float] | None = None  # ints ask for integer noise
    alpha: float | None = Field(default=None, ge=0, le=1)
    candidates: list[float] | None = Field(default=None, max_length=100_000)
    categories: list[Any] | None = Field(default=None, max_length=100_000)
    bins: list[float] | None = Field(default=None, max_length=100_000)
    # fit_model
    model: str | None = Field(default=None, max_length=100)
    features: list[str] | None = Field(default=None, max_length=1000)
    target: str | None = Field(default=None, max_length=200)
    label: dict[str, Any] | None = None  # a filter tree as a 0/1 target, instead of a column
    params: dict[str, Any] = Field(default_factory=dict)
    # context: [[step, [argument, ...]], ...]; expressions as Polars' JSON
    steps: list[tuple[str, list[Any]]] | None = Field(default=None, max_length=64)
    # privatize_text: the privacy unit, OOV handling, truncation, vocabulary size
    unit: Literal["word", "document"] | None = None
    oov: Literal["sample", "token"] | None = None
    max_words: int | None = Field(default=None, ge=1, le=10_000)
    vocabulary: int | None = Field(default=None, ge=100, le=400_000)
    # synthesize: the columns are ``features``; bounds and categories are public inputs
    synthesizer: Literal["mst", "aim"] | None = None
    rows: int | None = Field(default=None, ge=1, le=2_000_000)
    public_categories: dict[str, list[Any]] | None = None
    column_bounds: dict[str, tuple[float, float]] | None = None
    n_bins: int | None = Field(default=None, ge=2, le=64)
    binning: Literal["uniform", "quantile"] | None = None
    # train_torch: DP-SGD settings (architecture, epochs, ...), checked by the releaser
    # (researcher_kit.dp.deep.Training); the columns are ``features`` and ``target``/``label``
    training: dict[str, Any] | None = None


def check_filter(node: Any, depth: int = 0, seen: list[int] | None = None) -> None:
    """Raise ``ValueError`` unless ``node`` is a well-formed filter tree (see module doc)."""
    seen = [0] if seen is None else seen
    seen[0] += 1
    if depth > MAX_FILTER_DEPTH or seen[0] > MAX_FILTER_NODES:
        raise ValueError("the filter is too large or too deeply nested")
    if not isinstance(node, dict) or len(node) == 0:
        raise ValueError(f"filter node {node!r} is not an object")
    keys = set(node)
    if keys == {"col"} and isinstance(node["col"], str):
        return
    if keys == {"lit"} and (node["lit"] is None or type(node["lit"]) in (int, float, str, bool)):
        return
    if keys == {"cmp", "left", "right"} and node["cmp"] in COMPARISONS:
        check_filter(node["left"], depth + 1, seen)
        check_filter(node["right"], depth + 1, seen)
        return
    if len(keys) == 1 and keys <= {"and", "or"} and isinstance(next(iter(node.values())), list):
        for child in next(iter(node.values())):
            check_filter(child, depth + 1, seen)
        return
    if keys in ({"not"}, {"isnull"}):
        check_filter(next(iter(node.values())), depth + 1, seen)
        return
    if keys == {"isin", "values"} and isinstance(node["values"], list):
        check_filter(node["isin"], depth + 1, seen)
        if not all(v is None or type(v) in (int, float, str, bool) for v in node["values"]):
            raise ValueError("isin values must be numbers, strings, booleans or None")
        return
    raise ValueError(
        f"filter node {node!r} is not one of col, lit, cmp, and, or, not, isin, isnull"
    )


def filter_columns(node: dict[str, Any] | None) -> set[str]:
    """The columns a filter reads (so the releaser loads only those).

    >>> sorted(filter_columns({"cmp": "<", "left": {"col": "a"}, "right": {"col": "b"}}))
    ['a', 'b']
    """
    if node is None:
        return set()
    if "col" in node:
        return {node["col"]}
    found: set[str] = set()
    for value in node.values():
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, dict):
                found |= filter_columns(child)
    return found
