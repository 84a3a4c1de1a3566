"""Evaluation questions for `haps collect`: read from JSONL, CSV, Parquet or a local Hugging Face
`datasets` folder, each with an id, the query text and a reference answer.

Every bad row of a file is reported at once with its line number, so a file is fixed in one pass.
"""

import csv
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

QUESTION_FIELDS = ("id", "query", "reference")
OPTIONAL_FIELDS = ("dataset", "task")
MAX_REPORTED = 10


class QuestionsError(ValueError):
    """A questions file that cannot be used; the message lists every problem (line numbers)."""


@dataclass(frozen=True)
class Question:
    """One evaluation question: `id` is unique in a collection, `reference` is what the scorer
    compares the output with (a letter, a number, a pattern, ...)."""

    id: str
    query: str
    reference: str
    dataset: str = ""
    task: str = ""


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float | str):
        text = str(value)
        return text if text.strip() else None
    return None


def _rows_jsonl(path: Path, problems: list[str]) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8-sig") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"line {line_no}: not JSON ({exc.msg})")


def _rows_csv(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            yield reader.line_num, {k: v for k, v in row.items() if k is not None}


def _rows_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    yield from enumerate(pq.read_table(path).to_pylist(), start=1)


def _rows_hf_folder(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        import datasets  # type: ignore[import-not-found]  # optional dependency
    except ImportError:
        msg = (
            f"`questions` {str(path)!r} is a folder; reading a Hugging Face `datasets` folder needs "
            "the `datasets` package (pip install datasets), or export it to JSONL/CSV/Parquet"
        )
        raise QuestionsError(msg) from None
    data = datasets.load_from_disk(str(path))
    if isinstance(data, datasets.DatasetDict):
        if len(data) != 1:
            msg = f"`questions` folder {str(path)!r} holds splits {sorted(data)}; save one split"
            raise QuestionsError(msg)
        data = next(iter(data.values()))
    yield from enumerate(data, start=1)


def _validate(rows: Iterable[tuple[int, Any]], where: str, problems: list[str]) -> list[Question]:
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for line_no, row in rows:
        if not isinstance(row, Mapping):
            problems.append(f"line {line_no}: expected an object with {list(QUESTION_FIELDS)}")
            continue
        values: dict[str, str] = {}
        bad = False
        for name in QUESTION_FIELDS:
            text = _as_text(row.get(name))
            if text is None:
                problems.append(f"line {line_no}: `{name}` is missing or empty (got {row.get(name)!r})")
                bad = True
            else:
                values[name] = text
        for name in OPTIONAL_FIELDS:
            values[name] = _as_text(row.get(name)) or ""
        if bad:
            continue
        qid = values["id"]
        if qid in seen:
            problems.append(f"line {line_no}: id {qid!r} repeats the id of line {seen[qid]}")
            continue
        seen[qid] = line_no
        questions.append(Question(**values))
    if problems:
        shown = problems[:MAX_REPORTED]
        more = f" (and {len(problems) - MAX_REPORTED} more)" if len(problems) > MAX_REPORTED else ""
        msg = f"`questions` file {where!r} is invalid: " + "; ".join(shown) + more
        raise QuestionsError(msg)
    if not questions:
        msg = f"`questions` file {where!r} holds no questions"
        raise QuestionsError(msg)
    return questions


def load_questions(source: "str | Path | Iterable[Question | Mapping[str, Any]]") -> list[Question]:
    """Reads questions from a file (``.jsonl``, ``.csv``, ``.parquet``), a local Hugging Face
    `datasets` folder (``save_to_disk``), or an iterable of `Question`s / dicts.

    Raises:
        QuestionsError: listing every bad row (with its line number), duplicate ids, or a file
            that is missing, of an unsupported kind, or empty.
    """
    problems: list[str] = []
    if not isinstance(source, str | Path):
        items = list(source)
        if all(isinstance(q, Question) for q in items):
            rows: Iterable[tuple[int, Any]] = enumerate(
                (
                    {
                        "id": q.id,
                        "query": q.query,
                        "reference": q.reference,
                        "dataset": q.dataset,
                        "task": q.task,
                    }
                    for q in items
                    if isinstance(q, Question)
                ),
                start=1,
            )
        else:
            rows = enumerate(items, start=1)
        return _validate(rows, "<questions>", problems)
    path = Path(source)
    if path.is_dir():
        return _validate(_rows_hf_folder(path), str(path), problems)
    if not path.is_file():
        msg = f"`questions` file {str(path)!r} does not exist"
        raise QuestionsError(msg)
    name = path.name.lower()
    if name.endswith((".jsonl", ".ndjson")):
        rows = _rows_jsonl(path, problems)
    elif name.endswith(".csv"):
        rows = _rows_csv(path)
    elif name.endswith(".parquet"):
        rows = _rows_parquet(path)
    else:
        msg = (
            f"`questions` file {str(path)!r} has an unsupported extension; allowed: .jsonl, .csv, "
            ".parquet, or a Hugging Face datasets folder"
        )
        raise QuestionsError(msg)
    try:
        return _validate(rows, str(path), problems)
    except UnicodeDecodeError as exc:
        msg = f"`questions` file {str(path)!r} is not UTF-8 text ({exc.reason})"
        raise QuestionsError(msg) from None
