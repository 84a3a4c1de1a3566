"""A log file's columns as a whole: required columns that no row has (one header error each,
with the unknown columns that look like it), and the one notice that lists ignored columns.

For CSV the columns are the header's; for JSONL and Parquet, every key seen in any row.
"""

import difflib
import logging
from collections.abc import Collection, Iterable, Sequence

from haps_core.logs.fields import KNOWN_FIELDS, REQUIRED_FIELDS
from haps_core.logs.report import RowError

logger = logging.getLogger(__name__)

MISSING_FIELD = "required field is missing"


def near_misses(name: str, candidates: Iterable[str]) -> list[str]:
    """The candidates that look like `name` (a typo of it), best first."""
    return difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)


def header_errors(
    file: str, columns: Sequence[str], n_rows: int, params: Collection[str], text: bool
) -> list[RowError]:
    """One error per required column that no row of the file has."""
    unknown = [c for c in columns if c not in KNOWN_FIELDS and c not in params]
    where = "the header" if text else f"any of the {n_rows} rows"
    errors = []
    for name in REQUIRED_FIELDS:
        if name in columns:
            continue
        like = near_misses(name, unknown)
        if like:
            hint = f"the file has {', '.join(f'`{c}`' for c in like)}: did you mean `{name}`?"
        else:
            hint = f"the file's columns are {', '.join(f'`{c}`' for c in columns) or 'none'}"
        problem = f"required column is missing from {where}; {hint}"
        errors.append(RowError(file, 1 if text else 0, name, None, problem, kind="header"))
    return errors


def drop_covered(errors: list[RowError], header: Sequence[RowError]) -> list[RowError]:
    """Header errors first, then the row errors a header error does not already cover (a
    column no row has is one error, not one per row)."""
    covered = {e.field for e in header}
    return [*header, *(e for e in errors if not (e.field in covered and e.problem == MISSING_FIELD))]


def log_ignored_columns(ignored: Collection[str], files: Sequence[str]) -> None:
    """One notice for the columns that are neither log fields nor catalog parameters.

    INFO, since logs normally carry bookkeeping (ids, latencies, timestamps); WARNING when one
    looks like a typo of an optional field (`temprature`), because ignoring that changes the
    actions the log describes without any error.
    """
    if not ignored:
        return
    names = sorted(ignored)
    optional = [f for f in KNOWN_FIELDS if f not in REQUIRED_FIELDS]
    typos = {c: like[0] for c in names if (like := near_misses(c, optional))}
    hint = "".join(f"; `{c}` looks like `{f}`: did you mean it?" for c, f in typos.items())
    logger.log(
        logging.WARNING if typos else logging.INFO,
        "ignored column(s) in %s: %s (bookkeeping, not log fields or catalog parameters; declare "
        "them with `parameters` to route on them)%s",
        ", ".join(files),
        ", ".join(f"`{c}`" for c in names),
        hint,
    )
