"""What the commands read and write: queries from a file or stdin (``-``), outputs written
atomically to regular files but through symlinks and devices (``-`` is stdout), JSON of numpy
values, and the error that reports bad input as one line (exit code 2)."""

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import numpy as np

STDIO = "-"


class UsageError(ValueError):
    """Bad input on the command line: reported as one line, exit code 2."""


def read_text_arg(source: str, option: str) -> tuple[str, str]:
    """The text of a file named on the command line, or of stdin for ``-``; with the name to
    show in messages."""
    if source == STDIO:
        return sys.stdin.read(), "<stdin>"
    path = Path(source)
    if not path.exists() or path.is_dir():
        msg = f"`{option}` file {source!r} does not exist"
        raise UsageError(msg)
    return path.read_text(encoding="utf-8"), source


def read_queries(source: str | Path, backends: list[str]) -> list[dict[str, Any]]:
    """The queries of a JSONL file or of stdin (``-``): ``{"id", "query", "backends"}`` per line,
    every bad line reported at once; `backends` are the names a line may restrict routing to."""
    text, name = read_text_arg(str(source), "--input")
    items, errors = [], []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{name}:{i}: not JSON ({exc})")
            continue
        if not isinstance(row, dict) or not isinstance(row.get("query"), str) or not row["query"].strip():
            errors.append(f"{name}:{i}: needs a non-empty string `query`")
            continue
        allowed = row.get("backends")
        if allowed is not None:
            unknown = sorted(set(allowed) - set(backends)) if isinstance(allowed, list) else [allowed]
            if unknown:
                errors.append(f"{name}:{i}: `backends` names unknown backend(s) {unknown}; known: {backends}")
                continue
        items.append({"id": row.get("id", i), "query": row["query"], "backends": allowed})
    if errors:
        raise UsageError("invalid queries file:\n  " + "\n  ".join(errors))
    if not items:
        msg = f"`--input` {name!r} holds no queries"
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


def is_stdout(target: str) -> bool:
    return target == STDIO


def write_output(target: str | Path, text: str) -> None:
    """Writes a command's output: ``-`` to stdout; through a symlink, device, FIFO or other
    non-regular file by opening it for writing (never replacing it); a regular file or a new
    path through a temporary file renamed over it, so a failure never leaves a half-written
    output."""
    if str(target) == STDIO:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(target)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            msg = f"output {str(path)!r} is a folder"
            raise UsageError(msg)
        with open(path, "w", encoding="utf-8") as fh:  # follows the link; a device stays a device
            fh.write(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    if st is not None:
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
    tmp.replace(path)
