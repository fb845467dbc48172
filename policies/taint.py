"""A simple taint analysis over the submitted function: which values come from the data.

Every value gets a :class:`Taint`: whether raw data flowed into it, whether a DP release
flowed into it, and what it is (a measurement, a function that returns DP releases, an
unfitted estimator). The analysis walks statements in order (branches and loop bodies
are walked in sequence, loops twice) and records

- each returned value's taint (per tuple element / dict key),
- every ``print``/``display``/``logging`` call given data-derived values.

It is deliberately simple and errs on the side of "raw": values that mix raw data and DP
releases are marked ``mixed`` and left to the instrumented dry-run to decide.

>>> import ast
>>> tree = ast.parse("def f(df):\\n    return df['age'].mean()\\n")
>>> result = analyse_function(tree.body[0], {}, params_raw=True)
>>> result.returns[0].taint.raw
True
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field, replace

from policies import dp_libraries
from policies.names import dotted_name

ROW_METHODS = frozenset(
    {"head", "tail", "sample", "iloc", "loc", "to_dict", "to_records", "values", "to_numpy",
     "tolist", "to_list", "nlargest", "nsmallest", "drop_duplicates", "unique", "describe",
     "value_counts", "iterrows", "itertuples", "to_string", "to_markdown"}
)  # fmt: skip
FIT_METHODS = frozenset({"fit", "partial_fit", "fit_transform", "fit_predict"})
PRINTERS = frozenset({"print", "display", "pprint"})
LOG_METHODS = frozenset({"info", "debug", "warning", "error", "critical", "exception", "log"})
MUTATORS = frozenset({"append", "extend", "update", "add", "insert", "setdefault", "__setitem__"})
#: Keyword arguments that set how much noise a mechanism adds.
SCALE_KEYWORDS = frozenset({"scale", "sensitivity", "epsilon", "temperature", "bounds"})
ELEMENTWISE = frozenset({"apply", "map", "applymap", "transform", "agg", "aggregate", "pipe"})


@dataclass(frozen=True)
class Taint:
    """What flowed into a value."""

    raw: bool = False  # raw data
    dp: bool = False  # a DP release
    direct: bool = False  # the value *is* a DP release (not post-processed)
    kind: str = "value"  # value | meas | noiser | model_dp | model_plain | ctx
    model: bool = False  # a model fitted on raw data without DP
    rows: bool = False  # row-level access (head, iloc, the frame itself...)

    def join(self, other: Taint) -> Taint:
        return Taint(
            raw=self.raw or other.raw,
            dp=self.dp or other.dp,
            direct=False,
            kind="value",
            model=self.model or other.model,
            rows=self.rows or other.rows,
        )

    @property
    def label(self) -> str:
        if self.raw and self.dp:
            return "mixed"
        if self.raw:
            return "raw"
        if self.dp:
            return "dp" if self.direct else "post_processing"
        return "constant"


CLEAN = Taint()
RAW = Taint(raw=True, rows=True)
IMPLICIT = Taint(raw=True)  # chosen by a branch on the data, not read from it
DP = Taint(dp=True, direct=True)


@dataclass
class Returned:
    name: str
    line: int
    taint: Taint
    text: str


@dataclass
class Analysis:
    returns: list[Returned] = field(default_factory=list)
    prints: list[tuple[int, str]] = field(default_factory=list)  # (line, call text)
    #: ``if``/``while``/conditional expressions whose test reads the raw data: (line, test)
    branches: list[tuple[int, str]] = field(default_factory=list)
    #: DP constructors given a noise scale or sensitivity computed from the data
    data_scales: list[tuple[int, str]] = field(default_factory=list)


def _join_all(taints: list[Taint]) -> Taint:
    out = CLEAN
    for t in taints:
        out = out.join(t)
    return out


class _Walker:
    def __init__(self, aliases: dict[str, str], analysis: Analysis) -> None:
        self.aliases = aliases
        self.analysis = analysis
        self.functions: dict[str, Taint] = {}  # nested def name -> what calling it returns
        #: > 0 inside a branch whose test reads raw data: every assignment there carries
        #: the data too (an implicit flow: ``if secret: x = 1``).
        self.implicit = 0

    def _branch(self, test: ast.expr, state: dict[str, Taint]) -> bool:
        """Evaluate a branch's test; record it when it reads the raw data."""
        taint = self.ev(test, state)
        if taint.raw:
            entry = (test.lineno, ast.unparse(test)[:120])
            if entry not in self.analysis.branches:
                self.analysis.branches.append(entry)
        return taint.raw

    # -- expressions -------------------------------------------------------------------

    def ev(self, node: ast.AST | None, state: dict[str, Taint]) -> Taint:
        if node is None or isinstance(node, ast.Constant):
            return CLEAN
        if isinstance(node, ast.Name):
            if node.id in self.functions:
                summary = self.functions[node.id]
                return Taint(kind="noiser") if summary.dp and not summary.raw else CLEAN
            return state.get(node.id, CLEAN)
        if isinstance(node, ast.Attribute):
            base = self.ev(node.value, state)
            if base.kind in ("meas", "noiser"):
                return CLEAN if node.attr != "invoke" else base
            if base.kind == "model_dp" and base.raw:
                return Taint(dp=True)
            rows = node.attr in ROW_METHODS
            return replace(base, direct=False, kind="value", rows=base.rows or rows)
        if isinstance(node, ast.Subscript):
            return self.ev(node.value, state).join(self.ev(node.slice, state))
        if isinstance(node, ast.Call):
            return self._call(node, state)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.RShift):
            left, right = self.ev(node.left, state), self.ev(node.right, state)
            if "meas" in (left.kind, right.kind):
                return Taint(kind="meas")
            return left.join(right)
        if isinstance(node, ast.Lambda):
            inner = dict(state)
            for a in node.args.args:
                inner[a.arg] = RAW
            body = self.ev(node.body, inner)
            return Taint(kind="noiser") if body.dp and not body.raw else CLEAN
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            inner = dict(state)
            for gen in node.generators:
                source = self.ev(gen.iter, inner)
                for target in ast.walk(gen.target):
                    if isinstance(target, ast.Name):
                        inner[target.id] = replace(source, direct=False, kind="value")
            if isinstance(node, ast.DictComp):
                return self.ev(node.key, inner).join(self.ev(node.value, inner))
            element = self.ev(node.elt, inner)
            return replace(element, direct=False, kind="value")
        if isinstance(node, ast.IfExp):
            raw = self._branch(node.test, state)
            out = self.ev(node.body, state).join(self.ev(node.orelse, state))
            return out.join(IMPLICIT) if raw else out
        if isinstance(node, ast.NamedExpr):
            value = self.ev(node.value, state)
            state[node.target.id] = value
            return value
        return _join_all([self.ev(child, state) for child in ast.iter_child_nodes(node)])

    def _call(self, node: ast.Call, state: dict[str, Taint]) -> Taint:
        qualname = dotted_name(node.func, self.aliases)
        args = [self.ev(a, state) for a in node.args] + [
            self.ev(k.value, state) for k in node.keywords
        ]
        joined = _join_all(args)
        short = qualname.rsplit(".", 1)[-1] if qualname else ""
        if self._is_printer(node, qualname) and joined.raw:
            self.analysis.prints.append((node.lineno, ast.unparse(node)[:120]))
            return CLEAN
        found = dp_libraries.recognise(qualname)
        if found is not None:
            library, _ = found
            for keyword in node.keywords:
                if keyword.arg in SCALE_KEYWORDS and self.ev(keyword.value, state).raw:
                    entry = (node.lineno, f"{keyword.arg}={ast.unparse(keyword.value)[:80]}")
                    self.analysis.data_scales.append(entry)
            kind = library.returns(qualname) if qualname else "dp"
            # a measurement (DP once invoked), an estimator (DP once fitted), or a release
            return DP if kind == "dp" else Taint(kind=kind)
        if qualname and qualname.startswith("sklearn.") and short[:1].isupper():
            return Taint(kind="model_plain")
        func = self.ev(node.func, state)
        if func.kind in ("meas", "noiser"):
            return DP
        if isinstance(node.func, ast.Attribute):
            receiver = self.ev(node.func.value, state)
            method = node.func.attr
            if receiver.kind in ("meas",) and method == "invoke":
                return DP
            if method in ELEMENTWISE and any(a.kind in ("meas", "noiser") for a in args):
                return Taint(dp=True, direct=True)
            if receiver.kind in ("model_dp", "model_plain") and method in FIT_METHODS:
                fitted = self._fitted(receiver, joined)
                self._rebind(node.func.value, fitted, state)
                return fitted if method in ("fit", "partial_fit") else fitted.join(joined)
            if receiver.kind == "ctx" or (receiver.dp and not receiver.raw and not args):
                return replace(receiver, kind="value", direct=receiver.kind == "ctx")
            if method in MUTATORS:
                self._rebind(node.func.value, receiver.join(joined), state)
            out = receiver.join(joined)
            if method in ROW_METHODS:
                out = replace(out, rows=receiver.raw or out.rows)
            elif receiver.raw:
                out = replace(out, rows=False)
            return out
        if isinstance(node.func, ast.Name) and node.func.id in self.functions:
            summary = self.functions[node.func.id]
            if summary.dp and not summary.raw:
                return DP
            return replace(joined, rows=False).join(summary) if joined.raw else summary
        return replace(joined, rows=False) if short not in ("list", "tuple", "dict") else joined

    @staticmethod
    def _fitted(receiver: Taint, data: Taint) -> Taint:
        if receiver.kind == "model_dp":
            return Taint(dp=True, direct=True, kind="model_dp", raw=False)
        if data.raw:
            return Taint(raw=True, model=True, dp=data.dp)
        return Taint(dp=data.dp)

    def _rebind(self, target: ast.AST, taint: Taint, state: dict[str, Taint]) -> None:
        if isinstance(target, ast.Name):
            state[target.id] = taint

    def _is_printer(self, node: ast.Call, qualname: str | None) -> bool:
        if isinstance(node.func, ast.Name) and node.func.id in PRINTERS:
            return True
        if (
            qualname
            and qualname.startswith("logging.")
            and qualname.split(".")[-1] in (LOG_METHODS)
        ):
            return True
        return bool(qualname) and qualname.endswith(("stdout.write", "stderr.write"))

    # -- statements --------------------------------------------------------------------

    def block(self, body: list[ast.stmt], state: dict[str, Taint], collect: bool) -> None:
        for stmt in body:
            self.statement(stmt, state, collect)

    def statement(self, stmt: ast.stmt, state: dict[str, Taint], collect: bool) -> None:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            inner = dict(state)
            for a in stmt.args.args + stmt.args.kwonlyargs:
                inner[a.arg] = RAW
            nested = _Walker(self.aliases, self.analysis)
            nested.functions = dict(self.functions)
            nested.block(stmt.body, inner, collect=False)
            returned = nested.returned_taint(stmt)
            self.functions[stmt.name] = returned
            return
        if isinstance(stmt, ast.Assign):
            value = self.ev(stmt.value, state)
            for target in stmt.targets:
                self._assign(target, value, state)
        elif isinstance(stmt, ast.AnnAssign | ast.AugAssign):
            value = self.ev(stmt.value, state)
            if isinstance(stmt, ast.AugAssign):
                value = value.join(self.ev(stmt.target, state))
            self._assign(stmt.target, value, state)
        elif isinstance(stmt, ast.For | ast.AsyncFor):
            self._assign(stmt.target, replace(self.ev(stmt.iter, state), kind="value"), state)
            for _ in range(2):
                self.block(stmt.body, state, collect)
            self.block(stmt.orelse, state, collect)
        elif isinstance(stmt, ast.While | ast.If):
            raw = self._branch(stmt.test, state)
            self.implicit += raw
            for _ in range(2 if isinstance(stmt, ast.While) else 1):
                self.block(stmt.body, state, collect)
            self.block(stmt.orelse, state, collect)
            self.implicit -= raw
        elif isinstance(stmt, ast.With | ast.AsyncWith):
            for item in stmt.items:
                value = self.ev(item.context_expr, state)
                if item.optional_vars is not None:
                    self._assign(item.optional_vars, value, state)
            self.block(stmt.body, state, collect)
        elif isinstance(stmt, ast.Try):
            self.block(stmt.body, state, collect)
            for handler in stmt.handlers:
                self.block(handler.body, state, collect)
            self.block(stmt.orelse, state, collect)
            self.block(stmt.finalbody, state, collect)
        elif isinstance(stmt, ast.Return):
            self._returned(stmt, state, collect)
        elif isinstance(stmt, ast.Expr):
            self.ev(stmt.value, state)

    def _assign(self, target: ast.AST, value: Taint, state: dict[str, Taint]) -> None:
        if self.implicit:
            value = value.join(IMPLICIT)
        if isinstance(target, ast.Name):
            state[target.id] = value
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self._assign(element, replace(value, direct=False), state)
        elif isinstance(target, ast.Subscript | ast.Attribute):
            base = target.value
            while isinstance(base, ast.Subscript | ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name):
                state[base.id] = state.get(base.id, CLEAN).join(value)
        elif isinstance(target, ast.Starred):
            self._assign(target.value, value, state)

    def _returned(self, stmt: ast.Return, state: dict[str, Taint], collect: bool) -> None:
        value = stmt.value
        if isinstance(value, ast.Tuple):
            items = [(str(i), e) for i, e in enumerate(value.elts)]
        elif isinstance(value, ast.Dict) and all(isinstance(k, ast.Constant) for k in value.keys):
            items = [(str(k.value), v) for k, v in zip(value.keys, value.values, strict=True)]
        else:
            items = [("return", value)]
        for name, expr in items:
            taint = self.ev(expr, state) if expr is not None else CLEAN
            text = ast.unparse(expr) if expr is not None else "None"
            self.analysis.returns.append(Returned(name, stmt.lineno, taint, text[:80]))
        del collect

    def returned_taint(self, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> Taint:
        """What the nested function returns, joined over its return statements."""
        mine = [r for r in self.analysis.returns if fn.lineno <= r.line <= (fn.end_lineno or 0)]
        self.analysis.returns = [r for r in self.analysis.returns if r not in mine]
        taints = [r.taint for r in mine]
        if not taints:
            return CLEAN
        if all(t.dp and not t.raw for t in taints):
            return Taint(dp=True, direct=True)
        return _join_all(taints)


def analyse_function(
    fn: ast.FunctionDef | ast.AsyncFunctionDef, aliases: dict[str, str], params_raw: bool
) -> Analysis:
    """Taint of the entry function's returns and its prints of data.

    ``params_raw``: the parameters are private tables (mechanism requests); otherwise
    they are OpenDP Contexts whose every release is DP.
    """
    analysis = Analysis()
    walker = _Walker(aliases, analysis)
    seed = RAW if params_raw else Taint(dp=True, direct=True, kind="ctx")
    state = {a.arg: seed for a in fn.args.args + fn.args.kwonlyargs}
    walker.block(fn.body, state, collect=True)
    return analysis
