"""Small AST helpers shared by the static passes: import aliases and constant folding.

>>> import ast
>>> tree = ast.parse("import opendp.prelude as dp\\nx = dp.m.make_laplace")
>>> aliases = import_aliases(tree)
>>> dotted_name(tree.body[1].value, aliases)
'opendp.prelude.m.make_laplace'
>>> fold(ast.parse("s / e", mode="eval").body, {"s": 1.0, "e": 0.5})
2.0
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Iterator
from typing import Any

_BINOPS: dict[type, Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
}
_MATH_FUNCS = {"sqrt", "log", "exp", "log1p", "expm1", "fabs"}


def import_aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted module path, for every import anywhere in ``tree``.

    ``import a.b as c`` gives ``c -> a.b``; ``import a.b`` gives ``a -> a``;
    ``from a import b as c`` gives ``c -> a.b``.
    """
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def dotted_name(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """``a.b.c`` with ``a`` resolved through the import aliases, or None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    head = aliases.get(node.id, node.id)
    return ".".join([head, *reversed(parts)])


def fold(node: ast.AST | None, env: dict[str, Any]) -> Any:
    """The value of a constant expression (numbers, tuples, names bound in ``env``).

    Returns None when the expression is not a constant in this scope.
    """
    if node is None:
        return None
    try:
        return _fold(node, env)
    except (ArithmeticError, ValueError, TypeError, KeyError, _NotConstant):
        return None


class _NotConstant(Exception):
    pass


def _fold(node: ast.AST, env: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        raise _NotConstant
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_fold(node.left, env), _fold(node.right, env))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_fold(node.operand, env)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
        return _fold(node.operand, env)
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(_fold(e, env) for e in node.elts)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in _MATH_FUNCS
        and len(node.args) == 1
    ):
        return getattr(math, node.func.attr)(_fold(node.args[0], env))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1:
        if node.func.id in ("float", "int", "abs"):
            return {"float": float, "int": int, "abs": abs}[node.func.id](_fold(node.args[0], env))
    raise _NotConstant


def scope_constants(body: list[ast.stmt], outer: dict[str, Any] | None = None) -> dict[str, Any]:
    """Names bound to constants by simple assignments in ``body`` (in order, not nested).

    A name assigned twice keeps its last constant value; a name later assigned a
    non-constant is dropped. Good enough for ``sensitivity = 1.0; scale = sensitivity / eps``.
    """
    env = dict(outer or {})
    for stmt in _flat_statements(body):
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            if isinstance(target, ast.Name):
                value = fold(stmt.value, env)
                if value is None:
                    env.pop(target.id, None)
                else:
                    env[target.id] = value
            elif isinstance(target, ast.Tuple) and isinstance(stmt.value, ast.Tuple):
                for t, v in zip(target.elts, stmt.value.elts, strict=False):
                    if isinstance(t, ast.Name):
                        value = fold(v, env)
                        if value is None:
                            env.pop(t.id, None)
                        else:
                            env[t.id] = value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            value = fold(stmt.value, env)
            if value is None:
                env.pop(stmt.target.id, None)
            else:
                env[stmt.target.id] = value
    return env


def _flat_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements of a block and of its if/for/while/with/try blocks, not nested defs."""
    for stmt in body:
        yield stmt
        for field in ("body", "orelse", "finalbody"):
            inner = getattr(stmt, field, None)
            if isinstance(inner, list) and not isinstance(
                stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
            ):
                yield from _flat_statements(inner)
        for handler in getattr(stmt, "handlers", []) or []:
            yield from _flat_statements(handler.body)


def functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda]:
    """Every function definition and lambda in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield node
