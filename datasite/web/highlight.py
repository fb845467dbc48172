"""Submitted code as numbered, highlighted lines, with the policy findings at their lines.

Pygments lexes the whole source (so a docstring spanning lines is still a string), and
the tokens are cut at line breaks, so each line is complete markup on its own and a
finding can sit right under the line it is about.

>>> lines = highlighted_lines("x = 1\\n'''a\\nb'''\\n")
>>> [line.number for line in lines], str(lines[2].html)
([1, 2, 3], '<span class="sd">b&#x27;&#x27;&#x27;</span>')
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from markupsafe import Markup
from pygments import lex
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer
from pygments.token import STANDARD_TYPES, Token, _TokenType

SEVERITY_ORDER = {"blocking": 0, "error": 0, "warning": 1, "info": 2}


@dataclass
class CodeLine:
    number: int
    html: Markup
    findings: list[dict[str, Any]] = field(default_factory=list)


def _css_class(token_type: _TokenType) -> str:
    while token_type not in STANDARD_TYPES and token_type is not Token:
        token_type = token_type.parent
    return STANDARD_TYPES.get(token_type, "")


def _span(token_type: _TokenType, text: str) -> str:
    css = _css_class(token_type)
    escaped = html.escape(text)
    return f'<span class="{css}">{escaped}</span>' if css and text else escaped


def highlighted_lines(source: str) -> list[CodeLine]:
    """One ``CodeLine`` per line of ``source``, numbered from 1, markup escaped."""
    lines: list[list[str]] = [[]]
    for token_type, value in lex(source, PythonLexer(stripnl=False, ensurenl=False)):
        parts = value.split("\n")
        for i, part in enumerate(parts):
            if i:
                lines.append([])
            if part:
                lines[-1].append(_span(token_type, part))
    if len(lines) > 1 and not lines[-1] and source.endswith("\n"):
        lines.pop()
    return [CodeLine(n, Markup("".join(parts))) for n, parts in enumerate(lines, start=1)]


def place_findings(lines: list[CodeLine], findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attach each finding to its line; returns the findings that have no line in the code."""
    unplaced = []
    for finding in sorted(findings, key=lambda f: SEVERITY_ORDER.get(f.get("severity"), 3)):
        line = finding.get("line")
        if isinstance(line, int) and 1 <= line <= len(lines):
            lines[line - 1].findings.append(finding)
        else:
            unplaced.append(finding)
    return unplaced


@cache
def pygments_css() -> str:
    """The token colours for ``.code`` (Pygments' default style meets WCAG AA contrast)."""
    return HtmlFormatter(style="default").get_style_defs(".code")
