"""The DP libraries the checker knows, one module each, and their registry.

Each module declares one :class:`DPLibrary` (``LIBRARY``): how its mechanism calls are
recognised and their implied epsilon read (``policies.mechanisms``, ``policies.static``,
``policies.taint``), what a policy allows by default (``policies.schema``), and, for
libraries the dry-run instruments, the run-time patches and how their spends are
accounted and reported (``policies.instrument``, ``policies.dry_run``,
``policies.enforcement``). The modules:

- ``opendp``: OpenDP measurements (``make_laplace``, ``then_gaussian``, ...);
- ``opendp_context``: OpenDP's ``Context.compositor``;
- ``diffprivlib``: diffprivlib's models, tools and mechanisms;
- ``researcher_kit``: the kit's ``researcher_kit.dp`` helpers given ``epsilon=``;
- ``handwritten``: NumPy/SciPy/``random`` noise the code draws itself.

Adding a library is one module here (a ``LIBRARY = DPLibrary(...)``) and one line in
:data:`LIBRARIES`. Code outside this package (or a test) may :func:`register` one
instead, for its own process only: the dry-run patches a library in the sandboxed child,
which knows only the libraries its imports register. A library that only needs to be
recognised, with ``epsilon=`` read from its calls, is a few lines:

>>> from policies.dp_libraries import DPLibrary, by_family, epsilon_keyword, recognise, register
>>> toy = DPLibrary(
...     family="toydp",
...     title="ToyDP",
...     recognise=lambda qualname: qualname if qualname.startswith("toydp.") else None,
...     read=epsilon_keyword(default=None),  # a call without epsilon= is no mechanism
...     default_mechanisms=("toydp.*",),
...     imports=("toydp",),
... )
>>> unregister = register(toy)
>>> library, name = recognise("toydp.noisy_sum")
>>> (library.family, name, by_family("toydp").title)
('toydp', 'toydp.noisy_sum', 'ToyDP')
>>> unregister()
>>> recognise("toydp.noisy_sum") is None
True

The order of :data:`LIBRARIES` is the order of the default allowed mechanisms (part of
``DEFAULT_POLICY.version``); the dry-run lists releases before allotments
(:func:`instrumented`).
"""

from __future__ import annotations

from collections.abc import Callable

from policies.dp_libraries import diffprivlib, handwritten, opendp, opendp_context, researcher_kit
from policies.dp_libraries.base import (
    DPLibrary,
    MechanismCall,
    Patch,
    Reader,
    Tally,
    epsilon_keyword,
)

#: The registered libraries, in order (a name is recognised by the first that claims it).
LIBRARIES: tuple[DPLibrary, ...] = (
    opendp.LIBRARY,
    opendp_context.LIBRARY,
    diffprivlib.LIBRARY,
    researcher_kit.LIBRARY,
    handwritten.LIBRARY,
)

__all__ = [
    "LIBRARIES",
    "DPLibrary",
    "MechanismCall",
    "Patch",
    "Reader",
    "Tally",
    "by_family",
    "default_mechanisms",
    "epsilon_keyword",
    "helper_modules",
    "instrumented",
    "recognise",
    "register",
]


def register(library: DPLibrary) -> Callable[[], None]:
    """Add ``library`` after the others; returns the function that removes it again."""
    global LIBRARIES
    if any(known.family == library.family for known in LIBRARIES):
        raise ValueError(f"a DP library of family {library.family!r} is already registered")
    LIBRARIES = (*LIBRARIES, library)

    def unregister() -> None:
        global LIBRARIES
        LIBRARIES = tuple(known for known in LIBRARIES if known is not library)

    return unregister


def by_family(family: str) -> DPLibrary:
    """The library of ``family`` (``KeyError`` if none is registered)."""
    for library in LIBRARIES:
        if library.family == family:
            return library
    raise KeyError(family)


def recognise(qualname: str | None) -> tuple[DPLibrary, str] | None:
    """(library, display name) when the resolved name ``qualname`` is a mechanism call."""
    if not qualname:
        return None
    for library in LIBRARIES:
        name = library.recognise(qualname)
        if name is not None:
            return library, name
    return None


def instrumented() -> tuple[DPLibrary, ...]:
    """The libraries the dry-run patches: those that record releases, then allotments."""
    patched = [library for library in LIBRARIES if library.install is not None]
    return tuple(sorted(patched, key=lambda library: library.allotment))


def default_mechanisms() -> tuple[str, ...]:
    """What a policy allows unless its owner says otherwise, library by library."""
    return tuple(name for library in LIBRARIES for name in library.default_mechanisms)


def helper_modules() -> tuple[str, ...]:
    """Modules whose functions name the releases made inside them."""
    return tuple(library.helper_module for library in LIBRARIES if library.helper_module)
