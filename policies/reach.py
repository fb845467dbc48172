"""What code can reach beyond its data: attribute chains, reflection, trust settings.

A raw-data function shares its process with the table, so every path from its code to
the interpreter's internals is a way around the other rules. These rules name those
paths at their lines, whatever the spelling:

- ``module_reach`` (blocking): an attribute that is a module no policy allows, reached
  through another module (``random._os``, ``collections._sys``, ``typing.sys``,
  ``pd.io.common.os``);
- ``reflection`` (blocking): frames, tracebacks, the garbage collector's object lists
  (``sys._getframe``, ``.f_back``, ``.f_locals``, ``gc.get_objects``, ...);
- ``opendp_trust_setting`` (blocking): switching on OpenDP features other than
  ``contrib`` (``honest-but-curious`` lets code build measurements with any privacy map);
  the site decides them;
- ``researcher_made_measurement`` (warning): ``make_user_measurement`` and friends, whose
  privacy map is the code's own claim;
- ``private_access`` (warning): any other private attribute (``obj._name``).

>>> import ast
>>> from policies.static import StaticResult
>>> result = StaticResult()
>>> analyse(ast.parse("import random\\nrandom._os.listdir('/')\\n"), {"random": "random"}, result)
>>> [(f.rule, f.line) for f in result.findings]
[('module_reach', 2)]
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from policies.names import dotted_name

if TYPE_CHECKING:
    from policies.static import StaticResult

#: Modules that reach the file system, processes, the network or the interpreter. Names
#: that are also everyday method names (``select``, ``stack``, ``code``, ``io``) are left
#: out: ``lf.select(...)`` and ``np.stack(...)`` are not reaches.
REACHING_MODULES = frozenset(
    {"os", "sys", "subprocess", "socket", "ctypes", "importlib", "builtins", "gc", "inspect",
     "traceback", "threading", "multiprocessing", "signal", "shutil", "pathlib", "pickle",
     "marshal", "codeop", "runpy", "posix", "mmap", "pty", "fcntl", "selectors", "asyncio",
     "urllib", "ftplib", "smtplib", "tempfile", "zipimport", "pkgutil", "linecache",
     "weakref", "atexit"}
)  # fmt: skip
REFLECTION = frozenset(
    {"_getframe", "getframe", "currentframe", "getouterframes",
     "getinnerframes", "f_back", "f_locals", "f_globals", "f_builtins", "f_code", "tb_frame",
     "tb_next", "gi_frame", "cr_frame", "ag_frame", "get_objects", "get_referrers",
     "get_referents", "settrace", "setprofile", "_current_frames", "func_globals"}
)  # fmt: skip
USER_MADE = frozenset(
    {"make_user_measurement", "make_user_transformation", "make_user_postprocessor",
     "make_user_distance", "make_user_domain", "make_user_measure"}
)  # fmt: skip


def analyse(tree: ast.Module, aliases: dict[str, str], result: StaticResult) -> None:
    """Add this module's findings for every node of ``tree`` to ``result``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            _attribute(node, result)
        elif isinstance(node, ast.Call):
            _call(node, aliases, result)


def _attribute(node: ast.Attribute, result: StaticResult) -> None:
    name = node.attr
    if name.startswith("__"):
        return  # dunders have their own rule
    text = ast.unparse(node)[:80]
    if name in REFLECTION:
        result.add(
            "reflection",
            "blocking",
            f"`{text}` inspects frames or the interpreter's objects: a way to reach values "
            "the code was not handed.",
            node.lineno,
        )
    elif name.lstrip("_") in REACHING_MODULES:
        result.add(
            "module_reach",
            "blocking",
            f"`{text}` reaches the module `{name.lstrip('_')}` through an attribute: a "
            "forbidden module is forbidden by every path.",
            node.lineno,
        )
    elif name.startswith("_"):
        result.add(
            "private_access",
            "warning",
            f"`{text}` uses a private attribute: internals can reach what the public API hides.",
            node.lineno,
        )


def _call(node: ast.Call, aliases: dict[str, str], result: StaticResult) -> None:
    qualname = dotted_name(node.func, aliases) or ""
    short = node.func.attr if isinstance(node.func, ast.Attribute) else qualname
    short = short.rsplit(".", 1)[-1]
    if short in ("enable_features", "disable_features"):
        features = [a.value for a in node.args if isinstance(a, ast.Constant)]
        if (
            short == "disable_features"
            or len(features) != len(node.args)
            or (set(features) - {"contrib"})
        ):
            result.add(
                "opendp_trust_setting",
                "blocking",
                f"`{ast.unparse(node)[:80]}` changes OpenDP's trust settings; only the site "
                "sets them (it enables `contrib`).",
                node.lineno,
            )
    elif short in USER_MADE:
        result.add(
            "researcher_made_measurement",
            "warning",
            f"`{short}` builds a DP object whose privacy map the code defines itself: its "
            "guarantee is the researcher's claim, not OpenDP's proof.",
            node.lineno,
        )
