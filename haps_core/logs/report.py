"""Errors of a log file and how they are reported: header problems first, then row errors
grouped by (field, problem) with a count and the first line numbers, then a few in detail.

Every error stays on `LogValidationError.errors`; only the message is condensed, so 360 rows
with one mistake read as one line, not 360.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_REPORTED_ERRORS = 50
EXAMPLES_PER_GROUP = 3
LINES_PER_GROUP = 5
ERROR_KINDS = ("header", "row", "price")


@dataclass(frozen=True)
class RowError:
    """One problem in a log file: in a row (`kind="row"`), in its columns as a whole
    (`"header"`: a required column no row has), or a row whose cost cannot be known (`"price"`)."""

    file: str
    line: int
    field: str
    value: Any
    problem: str
    kind: str = "row"

    def __str__(self) -> str:
        if self.kind == "header":
            return f"{self.file}: column `{self.field}`: {self.problem}"
        value = repr(self.value)
        if len(value) > 80:
            value = value[:77] + "..."
        return f"{self.file}:{self.line}: field `{self.field}` = {value}: {self.problem}"


def group_errors(errors: Sequence[RowError]) -> list[tuple[str, str, list[RowError]]]:
    """Identical errors together: (field, problem, errors) in order of first appearance.

    Problems that differ only in numbers (a byte offset, a column, a line) are one group,
    shown with the first one's text.
    """
    groups: dict[tuple[str, str], list[RowError]] = {}
    for e in errors:
        groups.setdefault((e.field, re.sub(r"\d+", "N", e.problem)), []).append(e)
    return [(field, group[0].problem, group) for (field, _), group in groups.items()]


def _lines_text(group: Sequence[RowError]) -> str:
    lines = sorted({e.line for e in group})
    shown = ", ".join(str(n) for n in lines[:LINES_PER_GROUP])
    more = ", ..." if len(lines) > LINES_PER_GROUP else ""
    rows = "row" if len(lines) == 1 else "rows"
    word = "line" if len(lines) == 1 else "lines"
    similar = ", details vary" if len({e.problem for e in group}) > 1 else ""
    return f"{len(lines)} {rows}{similar}; {word} {shown}{more}"


def _message(file: str, errors: Sequence[RowError], n_rows: int) -> str:
    header = [e for e in errors if e.kind == "header"]
    rows = [e for e in errors if e.kind == "row"]
    priced = [e for e in errors if e.kind == "price"]
    parts: list[str] = []
    if header:
        parts.append(
            f"{len(header)} required column(s) missing in {file} ({n_rows} rows read); nothing was "
            "loaded. Fix the header (no row is usable without them, so skip_invalid "
            "(--skip-invalid) cannot help):"
        )
        parts += [f"  {e}" for e in header]
    if rows or priced:
        parts.append(
            f"{len(rows) + len(priced)} invalid value(s) in {file} ({n_rows} rows read); nothing was "
            f"loaded. Fix them, or pass skip_invalid=True (--skip-invalid) to drop those rows:"
        )
    groups = group_errors(rows)
    parts += [f"  `{field}`: {problem} ({_lines_text(g)})" for field, problem, g in groups]
    parts += [f"  `{field}`: {problem} ({_lines_text(g)})" for field, problem, g in group_errors(priced)]
    shown: list[RowError] = []
    for _, _, group in groups:
        shown += group[: max(0, min(EXAMPLES_PER_GROUP, MAX_REPORTED_ERRORS - len(shown)))]
    if shown:
        parts.append(" first rows in detail:" if len(shown) < len(rows) else " in detail:")
        order = {id(e): i for i, e in enumerate(rows)}
        parts += [f"  {e}" for e in sorted(shown, key=lambda e: order[id(e)])]
    if len(shown) < len(rows):  # past the detailed ones, still name every bad line (compactly)
        lines = sorted({e.line for e in rows})
        parts.append(
            f"  ... and {len(rows) - len(shown)} more; all {len(lines)} invalid line(s): "
            + ", ".join(str(n) for n in lines)
        )
    return "\n".join(parts)


class LogValidationError(ValueError):
    """A log file has invalid rows or columns; `errors` lists every one of them."""

    def __init__(self, file: str, errors: Sequence[RowError], n_rows: int) -> None:
        self.file = file
        self.errors = list(errors)
        self.n_rows = n_rows
        super().__init__(_message(file, self.errors, n_rows))

    @property
    def header_errors(self) -> list[RowError]:
        """The required columns no row of the file has (one error per column)."""
        return [e for e in self.errors if e.kind == "header"]
