"""The researcher kit's DP helpers: ``researcher_kit.dp.mean(..., epsilon=...)`` (family
``kit``).

A helper call is a mechanism when it is given ``epsilon=`` (without it, it draws on a
``budget=`` the code passed, or fails). The helpers release through OpenDP measurements
(and diffprivlib models), which the dry-run already records; a release made inside a
helper is named after it (``helper_module``), as the request declares it.

>>> LIBRARY.recognise("researcher_kit.dp.mean"), LIBRARY.recognise("researcher_kit.blind.x")
('researcher_kit.dp.mean', None)
"""

from __future__ import annotations

from policies.dp_libraries.base import DPLibrary, epsilon_keyword

MODULE = "researcher_kit.dp"


def recognise(qualname: str) -> str | None:
    return qualname if qualname.startswith(MODULE + ".") else None


LIBRARY = DPLibrary(
    family="kit",
    title="the researcher kit",
    recognise=recognise,
    # a mechanism only when it is given a budget
    read=epsilon_keyword(default=None),
    default_mechanisms=(MODULE + ".*",),
    imports=("researcher_kit",),
    helper_module=MODULE,
)
