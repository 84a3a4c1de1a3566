"""What the commands read and write: the queries file, atomic output files, JSON of numpy
values, and the error that reports bad input as one line (exit code 2)."""

import json
from pathlib import Path
from typing import Any

import numpy as np


class UsageError(ValueError):
    """Bad input on the command line: reported as one line, exit code 2."""


def read_queries(path: Path, backends: list[str]) -> list[dict[str, Any]]:
    """The queries of a JSONL file (``{"id", "query", "backends"}`` per line), every bad line
    reported at once; `backends` are the names a line may restrict routing to."""
    if not path.is_file():
        msg = f"`--input` file {str(path)!r} does not exist"
        raise UsageError(msg)
    items, errors = [], []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{path}:{i}: not JSON ({exc})")
            continue
        if not isinstance(row, dict) or not isinstance(row.get("query"), str) or not row["query"].strip():
            errors.append(f"{path}:{i}: needs a non-empty string `query`")
            continue
        allowed = row.get("backends")
        if allowed is not None:
            unknown = sorted(set(allowed) - set(backends)) if isinstance(allowed, list) else [allowed]
            if unknown:
                errors.append(f"{path}:{i}: `backends` names unknown backend(s) {unknown}; known: {backends}")
                continue
        items.append({"id": row.get("id", i), "query": row["query"], "backends": allowed})
    if errors:
        raise UsageError("invalid queries file:\n  " + "\n  ".join(errors))
    if not items:
        msg = f"`--input` file {str(path)!r} holds no queries"
        raise UsageError(msg)
    return items


def json_default(obj: object) -> object:
    """`json.dumps` default: numpy scalars and arrays as Python values."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    msg = f"not JSON serialisable: {type(obj).__name__}"
    raise TypeError(msg)


def write_atomic(path: Path, text: str) -> None:
    """Writes through a temporary file, so a failure never leaves a half-written output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
