"""Log-writing helpers shared by the tests: JSONL files and a small synthetic routing log."""

import gzip
import json
import random
from pathlib import Path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def synthetic_rows(n_queries: int = 60, seed: int = 0) -> list[dict]:
    """A small log where a cheap and an expensive backend differ by query type.

    "math" queries are solved by the expensive model only at low temperature; "trivia" queries
    by both. So a router that reads the query can save money, and one that picks temperature
    gains on math.
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n_queries):
        kind = "math" if i % 2 else "trivia"
        text = f"{'Compute 17 * 23 + 4 and explain' if kind == 'math' else 'Who wrote Hamlet?'} #{i}"
        for model, price in (("small", 0.5), ("large", 10.0)):
            for temp in (0.0, 1.0):
                if kind == "trivia":
                    p = 0.9 if model == "large" else 0.85
                else:
                    p = (0.9 if temp == 0.0 else 0.5) if model == "large" else 0.2
                rows.append(
                    {
                        "query_id": f"q{i}",
                        "query": text,
                        "model": model,
                        "score": float(rng.random() < p),
                        "temperature": temp,
                        "prompt_style": "cot",
                        "input_tokens": 100 + i,
                        "output_tokens": 50,
                        "cost": (100 + i) * price / 1e6 + 50 * price * 2 / 1e6,
                        "dataset": "synth",
                    }
                )
    return rows
