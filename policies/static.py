"""Stage 1 of the checker: what can be read from the source without running it.

Rules (each finding carries the line in the submitted source):

- ``syntax_error``, ``entry_missing``: the code does not parse / has no such function.
- ``forbidden_import``: an import outside the policy's ``allowed_imports``, or one of the
  modules that reach the system (os, sys, subprocess, socket, ctypes, importlib, pickle,
  shutil, pathlib, ...), which no policy may allow.
- ``dangerous_builtin``: ``exec``, ``eval``, ``compile``, ``__import__``, ``globals``,
  ``getattr`` with a computed or dunder name, ...; ``dunder_access``: ``x.__class__`` etc.
- ``file_access``: ``open`` and library readers/writers (``pd.read_csv``, ``np.load``,
  ``df.to_csv(path)``, ``skops.io.load``...), ``network_access``: sockets, URLs.
- ``mechanism_not_allowed`` / ``undeclared_mechanism``: DP calls vs policy / declaration.
- ``epsilon_exceeds_declaration``: constants in the code imply more epsilon than declared.
- ``prints_data``: ``print``/``display``/logging of data-derived values.
- ``raw_output`` / ``raw_rows_returned`` / ``non_dp_model``: returned values taken
  straight from the data (see :mod:`policies.taint`).
- ``possible_non_termination``: ``while True`` without ``break``.
- ``hand_written_noise``: noise drawn with NumPy, SciPy or ``random`` (a mechanism, but a
  floating-point one: see :func:`_hand_written`); ``hand_noised_output``: a returned value
  from the data with such noise added, which only the audit and a reviewer can judge.

>>> from policies.schema import DEFAULT_POLICY
>>> r = analyse("import os\\ndef f(df):\\n    return 1\\n", "f", {"epsilon": 1.0}, DEFAULT_POLICY)
>>> [(f.rule, f.severity, f.line) for f in r.findings]
[('forbidden_import', 'blocking', 1), ('no_mechanism', 'warning', 2)]
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from policies import reach
from policies.mechanisms import (
    GENERATOR,
    MechanismCall,
    is_handwritten,
    mechanism_call,
    same_mechanism,
)
from policies.names import dotted_name, import_aliases, scope_constants
from policies.report import Finding, OutputInfo, Severity
from policies.schema import Policy
from policies.taint import Analysis, analyse_function

#: Modules no policy may allow: they reach the file system, processes, the network or
#: the interpreter's internals.
NEVER_ALLOWED = frozenset(
    {
        "os",
        "sys",
        "subprocess",
        "socket",
        "ctypes",
        "importlib",
        "pickle",
        "cPickle",
        "shutil",
        "pathlib",
        "builtins",
        "marshal",
        "multiprocessing",
        "threading",
        "signal",
        "gc",
        "inspect",
        "io",
        "tempfile",
        "urllib",
        "http",
        "requests",
        "httpx",
        "ftplib",
        "smtplib",
        "telnetlib",
        "asyncio",
        "selectors",
        "select",
        "ssl",
        "code",
        "codeop",
        "runpy",
        "cffi",
        "mmap",
        "resource",
        "pty",
        "fcntl",
        "posix",
        "nt",
        "dill",
        "cloudpickle",
        "joblib",
        "shelve",
        "dbm",
        "sqlite3",
        "glob",
        "fileinput",
        "zipfile",
        "tarfile",
        "webbrowser",
        "platform",
        "sysconfig",
        "site",
        "types",
        "traceback",
        "concurrent",
        "_thread",
        "faulthandler",
        "atexit",
        "weakref",
        "copyreg",
    }
)
DANGEROUS_BUILTINS = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "__import__",
        "globals",
        "locals",
        "vars",
        "input",
        "breakpoint",
        "help",
        "exit",
        "quit",
        "memoryview",
        "setattr",
        "delattr",
        "__builtins__",
        "__loader__",
        "__spec__",
    }
)
SAFE_DUNDERS = frozenset({"__name__", "__doc__", "__version__", "__len__"})
FILE_CALLS = frozenset(
    {
        "read_pickle",
        "to_pickle",
        "load",
        "loads",
        "save",
        "savez",
        "savez_compressed",
        "savetxt",
        "loadtxt",
        "genfromtxt",
        "fromfile",
        "tofile",
        "memmap",
        "read_csv",
        "read_parquet",
        "read_json",
        "read_excel",
        "read_table",
        "read_feather",
        "read_hdf",
        "read_sql",
        "read_html",
        "read_xml",
        "read_fwf",
        "read_orc",
        "read_sas",
        "read_spss",
        "read_stata",
        "read_clipboard",
        "scan_csv",
        "scan_parquet",
        "scan_ndjson",
        "scan_ipc",
        "read_ipc",
        "read_database",
        "read_delta",
        "read_avro",
        "read_ndjson",
        "write_csv",
        "write_parquet",
        "write_json",
        "write_ipc",
        "write_ndjson",
        "sink_csv",
        "sink_parquet",
    }
)
WRITERS_WITH_PATH = frozenset(
    {
        "to_csv",
        "to_parquet",
        "to_json",
        "to_excel",
        "to_sql",
        "to_hdf",
        "to_feather",
        "to_stata",
        "to_html",
        "to_xml",
        "to_latex",
        "to_markdown",
        "to_string",
        "to_orc",
    }
)
PATH_KEYWORDS = frozenset({"path", "path_or_buf", "buf", "excel_writer", "con"})
NETWORK_NAMES = frozenset({"urlopen", "create_connection", "socket", "get_url", "fetch_openml"})
LOAD_OK = frozenset({"skops.io.loads"})  # trusted-type loading is the kit's business


@dataclass
class StaticResult:
    """What static analysis found; ``mechanisms`` feed the dry-run's sensitivities."""

    findings: list[Finding] = field(default_factory=list)
    mechanisms: list[MechanismCall] = field(default_factory=list)
    epsilon: float | None = None  # implied by constants (a lower bound if incomplete)
    epsilon_complete: bool = False
    outputs: list[OutputInfo] = field(default_factory=list)
    mixed_outputs: set[str] = field(default_factory=set)  # raw and DP both flow in
    output_findings: dict[str, list[Finding]] = field(default_factory=dict)
    entry_found: bool = False

    def add(self, rule: str, severity: Severity, message: str, line: int | None) -> Finding:
        finding = Finding(rule=rule, severity=severity, message=message, line=line)
        self.findings.append(finding)
        return finding


def non_dp_severity(policy: Policy) -> Severity:
    return {"block": "blocking", "review": "warning", "allow": "info"}[policy.non_dp_outputs]


def analyse(source: str, entry: str, declaration: dict[str, Any], policy: Policy) -> StaticResult:
    """Run every static rule over ``source`` (the whole module the site will execute)."""
    result = StaticResult()
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        result.add("syntax_error", "blocking", f"The code does not parse: {exc.msg}.", exc.lineno)
        return result
    aliases = _with_generators(tree, import_aliases(tree))
    _imports(tree, policy, result)
    _names(tree, aliases, result)
    reach.analyse(tree, aliases, result)
    _loops(tree, result)
    fn = next(
        (
            n
            for n in tree.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == entry
        ),
        None,
    )
    if fn is None:
        result.add("entry_missing", "blocking", f"No top-level function `{entry}`.", None)
        return result
    result.entry_found = True
    kind = declaration.get("kind", "mechanism")
    _mechanisms(tree, fn, aliases, declaration, policy, result)
    _taint(fn, aliases, kind, policy, result)
    return result


def _with_generators(tree: ast.Module, aliases: dict[str, str]) -> dict[str, str]:
    """The aliases plus names bound to NumPy random generators (``rng = default_rng()``).

    >>> src = "import numpy as np\\nrng = np.random.default_rng(1)\\n"
    >>> _with_generators(ast.parse(src), {"np": "numpy"})["rng"]
    'numpy.random.Generator'
    """
    out = dict(aliases)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        qualname = dotted_name(node.value.func, aliases) or ""
        if qualname in (
            "numpy.random.default_rng",
            "numpy.random.Generator",
            "numpy.random.RandomState",
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = GENERATOR
    return out


def _imports(tree: ast.Module, policy: Policy, result: StaticResult) -> None:
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                result.add(
                    "forbidden_import", "blocking", "Relative imports are not allowed.", node.lineno
                )
                continue
            modules = [node.module or ""]
            if any(a.name == "*" for a in node.names):
                result.add(
                    "star_import",
                    "warning",
                    f"`from {node.module} import *` hides which names are used.",
                    node.lineno,
                )
        for module in modules:
            top = module.split(".")[0]
            if top in NEVER_ALLOWED or module in NEVER_ALLOWED:
                result.add(
                    "forbidden_import",
                    "blocking",
                    f"Imports `{module}`, which reaches the system; never allowed.",
                    node.lineno,
                )
            elif not policy.allows_import(module):
                result.add(
                    "forbidden_import",
                    "blocking",
                    f"Imports `{module}`, which the policy does not allow "
                    f"(allowed: {', '.join(policy.allowed_imports)}).",
                    node.lineno,
                )


def _names(tree: ast.Module, aliases: dict[str, str], result: StaticResult) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in DANGEROUS_BUILTINS:
            result.add(
                "dangerous_builtin",
                "blocking",
                f"Uses `{node.id}`, which can run or reach arbitrary code.",
                node.lineno,
            )
        elif isinstance(node, ast.Name) and node.id == "open":
            result.add("file_access", "blocking", "Opens a file with `open`.", node.lineno)
        elif isinstance(node, ast.Name) and node.id.startswith("__") and node.id.endswith("__"):
            if node.id not in SAFE_DUNDERS:
                result.add(
                    "dunder_access",
                    "blocking",
                    f"Uses the interpreter name `{node.id}`.",
                    node.lineno,
                )
        elif isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            if node.attr not in SAFE_DUNDERS:
                result.add(
                    "dunder_access",
                    "blocking",
                    f"Accesses the attribute `{node.attr}`, a way around the sandbox's rules.",
                    node.lineno,
                )
        elif isinstance(node, ast.Call):
            _call_rules(node, aliases, result)


def _call_rules(node: ast.Call, aliases: dict[str, str], result: StaticResult) -> None:
    qualname = dotted_name(node.func, aliases) or ""
    short = qualname.rsplit(".", 1)[-1] if qualname else ""
    if isinstance(node.func, ast.Attribute):
        short = node.func.attr
    if isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr"):
        name = node.args[1] if len(node.args) > 1 else None
        literal = isinstance(name, ast.Constant) and isinstance(name.value, str)
        if not literal or name.value.startswith("_"):
            result.add(
                "dangerous_builtin",
                "blocking",
                f"`{node.func.id}` with a computed or private attribute name.",
                node.lineno,
            )
        return
    if short in NETWORK_NAMES:
        result.add(
            "network_access", "blocking", f"Calls `{short}`, which opens a connection.", node.lineno
        )
    elif (
        short in FILE_CALLS
        and qualname not in LOAD_OK
        and not (short in ("load", "loads") and not _is_library_io(qualname))
    ):
        result.add(
            "file_access",
            "blocking",
            f"Calls `{qualname or short}`, which reads or writes files.",
            node.lineno,
        )
    elif short in WRITERS_WITH_PATH and (
        node.args or any(k.arg in PATH_KEYWORDS for k in node.keywords)
    ):
        result.add(
            "file_access",
            "blocking",
            f"Calls `.{short}(...)` with a destination, which writes a file.",
            node.lineno,
        )


def _is_library_io(qualname: str) -> bool:
    """``load``/``loads`` are file access when they are NumPy's, skops' or json's-from-file."""
    return qualname.startswith(("numpy.", "skops.", "pickle", "joblib", "scipy.io"))


def _loops(tree: ast.Module, result: StaticResult) -> None:
    for node in ast.walk(tree):
        if not isinstance(node, ast.While):
            continue
        constant = isinstance(node.test, ast.Constant) and bool(node.test.value)
        if not constant:
            continue
        exits = any(
            isinstance(n, ast.Break | ast.Return | ast.Raise)
            for stmt in node.body
            for n in ast.walk(stmt)
        )
        if not exits:
            result.add(
                "possible_non_termination",
                "warning",
                "`while True` without `break`, `return` or `raise`: the loop may never end.",
                node.lineno,
            )


def _scopes(fn: ast.AST, outer: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Constant environments per function (by id), nested defs inheriting their parents'."""
    envs: dict[int, dict[str, Any]] = {}

    def visit(node: ast.AST, env: dict[str, Any]) -> None:
        body = node.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else []
        own = scope_constants(body, env) if body else env
        envs[id(node)] = own
        for child in ast.walk(node):
            if child is not node and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                if id(child) not in envs:
                    visit(child, own)

    visit(fn, outer)
    return envs


def _in_loop(node: ast.AST, parents: dict[int, ast.AST]) -> bool:
    current = parents.get(id(node))
    while current is not None:
        if isinstance(current, ast.For | ast.While | ast.AsyncFor | ast.comprehension):
            return True
        if isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return False
        current = parents.get(id(current))
    return False


def _mechanisms(
    tree: ast.Module,
    fn: ast.FunctionDef | ast.AsyncFunctionDef,
    aliases: dict[str, str],
    declaration: dict[str, Any],
    policy: Policy,
    result: StaticResult,
) -> None:
    module_env = scope_constants(tree.body)
    envs = _scopes(fn, module_env)
    parents = {id(c): p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    delta = float(declaration.get("delta") or 0.0)
    declared = list(declaration.get("mechanisms") or [])
    total, complete = 0.0, True
    for node in ast.walk(fn):
        if not isinstance(node, ast.Call):
            continue
        scope = parents.get(id(node))
        while scope is not None and not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
            scope = parents.get(id(scope))
        env = envs.get(id(scope), module_env) if scope is not None else module_env
        use = mechanism_call(node, aliases, env, delta)
        if use is None:
            continue
        result.mechanisms.append(use)
        if is_handwritten(use):
            _hand_written(use, result)
        elif not policy.allows_mechanism(use.name):
            result.add(
                "mechanism_not_allowed",
                "blocking",
                f"Uses `{use.name}`, which the policy does not allow.",
                use.line,
            )
        if declared and not any(same_mechanism(use.name, d) for d in declared):
            result.add(
                "undeclared_mechanism",
                "warning",
                f"Uses `{use.name}`, which the request does not declare "
                f"(declared: {', '.join(declared)}).",
                use.line,
            )
        if use.epsilon is None or _in_loop(node, parents):
            complete = False
        if use.epsilon is not None:
            total += use.epsilon
    result.epsilon = total if result.mechanisms else None
    result.epsilon_complete = complete and bool(result.mechanisms)
    declared_eps = float(declaration.get("epsilon") or 0.0)
    if result.epsilon is not None and result.epsilon > declared_eps * (1 + 1e-9) + 1e-12:
        parts = ", ".join(
            f"`{m.name}` line {m.line}: {m.epsilon:.6g}"
            + (f" (scale {m.scale:g}, sensitivity {m.sensitivity:g})" if m.scale else "")
            for m in result.mechanisms
            if m.epsilon is not None
        )
        first = next(m.line for m in result.mechanisms if m.epsilon is not None)
        # A Laplace/Gaussian scale read with an assumed unit sensitivity is a hint only;
        # a stated sensitivity or an explicit epsilon= makes it a finding.
        assumed = any("assumed" in m.sensitivity_source for m in result.mechanisms)
        result.add(
            "epsilon_exceeds_declaration",
            "warning" if assumed else "blocking",
            f"The code's constants imply epsilon {result.epsilon:.6g} "
            f"{'at least ' if not result.epsilon_complete else ''}"
            f"{'(if the sensitivity is 1) ' if assumed else ''}but the request "
            f"declares {declared_eps:g} ({parts}).",
            first,
        )
    if declaration.get("kind", "mechanism") == "mechanism" and not result.mechanisms:
        result.add(
            "no_mechanism",
            "warning",
            "No DP mechanism call found: nothing in the code adds noise.",
            fn.lineno,
        )


def _hand_written(use: MechanismCall, result: StaticResult) -> None:
    """Hand-written noise is a mechanism, but not one the site can vouch for."""
    implied = ""
    if use.epsilon is not None:
        implied = f" Its constants imply epsilon {use.epsilon:.4g} per call"
        if use.sensitivity is not None:
            implied += f" (sensitivity {use.sensitivity:g}, {use.sensitivity_source})"
        implied += "."
    replacement = (
        "`researcher_kit.dp` helpers or `opendp.measurements.make_gaussian`"
        if "norm" in use.name or "gauss" in use.name
        else "`researcher_kit.dp` helpers or `opendp.measurements.make_laplace`"
    )
    result.add(
        "hand_written_noise",
        "warning",
        f"Adds noise by hand with `{use.name}`: a floating-point sampler, which an attacker "
        f"can invert through the low bits of its output (Mironov, CCS 2012); the site "
        f"cannot prove the sensitivity it is scaled to. Use {replacement}, which sample "
        f"exactly and account for the budget.{implied}",
        use.line,
    )


def _taint(
    fn: ast.FunctionDef | ast.AsyncFunctionDef,
    aliases: dict[str, str],
    kind: str,
    policy: Policy,
    result: StaticResult,
) -> None:
    raw_data = kind == "mechanism"  # data-blind functions hold proxies, not tables
    analysis: Analysis = analyse_function(fn, aliases, params_raw=raw_data)
    for line, test in analysis.branches:
        result.add(
            "data_dependent_branch",
            "warning",
            f"Branches on the private data (`{test}`): the code can take another path on "
            "the real table than on the mock, and what it sets inside depends on the data "
            "(an implicit flow).",
            line,
        )
    for line, argument in analysis.data_scales:
        result.add(
            "data_dependent_noise",
            "warning",
            f"A DP mechanism's `{argument}` is computed from the data: the noise, and so the "
            "guarantee, then depends on the private table itself.",
            line,
        )
    for line, text in analysis.prints:
        result.add(
            "prints_data",
            "blocking",
            f"Prints values derived from the private data (`{text}`); the output of a "
            "run is not a DP release.",
            line,
        )
    severity = non_dp_severity(policy)
    classes: dict[str, tuple[str, str, str]] = {}
    for r in analysis.returns:
        t = r.taint
        if not raw_data:
            classes[r.name] = ("dp", "computed from releases (data-blind)", "")
            continue
        hand = any(is_handwritten(m) for m in result.mechanisms)
        if t.raw and t.model:
            rule, why = "non_dp_model", "a model fitted on the data without DP"
        elif t.raw and t.dp and hand:
            # Noise the code draws itself: enough of it or not, only the audit and a
            # reviewer can tell, so this is for review, not a block.
            classes[r.name] = ("unknown", "data with noise the code draws itself", "")
            finding = result.add(
                "hand_noised_output",
                "warning",
                f"Returns `{r.text}` (output `{r.name}`): a value from the data with noise "
                "the code draws itself; see the audit for whether it is enough.",
                r.line,
            )
            result.output_findings.setdefault(r.name, []).append(finding)
            continue
        elif t.raw and t.rows:
            rule, why = "raw_rows_returned", "rows or row-level values of the data"
        elif t.raw:
            rule, why = "raw_output", "a value computed directly from the data"
        else:
            label = "dp" if t.direct else "post_processing"
            reason = "a DP release" if t.direct else "derived from DP releases or constants"
            classes.setdefault(r.name, (label, reason, ""))
            continue
        if t.dp:
            result.mixed_outputs.add(r.name)
        classes[r.name] = ("raw", why, rule)
        finding = result.add(
            rule,
            severity,
            f"Returns `{r.text}` (output `{r.name}`): {why}"
            + (" mixed with DP releases." if t.dp else "."),
            r.line,
        )
        result.output_findings.setdefault(r.name, []).append(finding)
    result.outputs = [
        OutputInfo(name=name, type="?", cls=label, reason=f"static: {reason}")
        for name, (label, reason, _) in classes.items()
    ]
