"""WordPiece ids of a batch three ways, interleaved in one run, ONE table (us per query).

The Rust tokenizer on whole texts (``encode_batch_fast``), the per-piece table (pieces split by a
regular expression and looked up one by one in Python: the path for small batches) and the key
table (pieces split with array operations, short words looked up by packed key at once: the path
for large batches, `haps_core.piece_table`), on haps-bench dev queries, with both tables first
filled from train-split queries (as a serving process has them). Each pass times every way on
every batch, in alternating order; the table gives the median over passes and the ratio to the
key table.

Usage: python benchmarks/wordpiece.py [--passes 8]
"""

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from routing import warm_words, workloads  # noqa: E402  (benchmarks/routing.py)

from haps_core import wordpiece  # noqa: E402
from haps_core.memo import clear_all  # noqa: E402


def ways() -> dict[str, Callable[[list[str]], object]]:
    tokenizer = wordpiece.wordpiece_tokenizer()

    def rust(texts: list[str]) -> object:
        return [e.ids for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]

    def by_piece(texts: list[str]) -> object:
        rows = wordpiece._ids_by_piece(texts)
        return np.fromiter((i for r in rows for i in r), dtype=np.int64)  # flat, as the encoder needs

    return {
        "Rust tokenizer, whole texts": rust,
        "per-piece table": by_piece,
        "key table": wordpiece.wordpiece_flat,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passes", type=int, default=8)
    args = parser.parse_args()
    w = workloads(800)
    warm_words(w["train"])
    fns = ways()
    rows: dict[tuple[int, str], list[float]] = {}
    for bs in (64, 256):
        batches = [w["bench"][s : s + bs] for s in range(0, len(w["bench"]) - bs + 1, bs)]
        for f in fns.values():  # every word of the timed batches remembered: warm tables
            for b in batches:
                clear_all()
                f(b)
        for p in range(args.passes):
            order = list(fns.items()) if p % 2 else list(fns.items())[::-1]
            for name, f in order:
                t = time.perf_counter()
                for b in batches:
                    clear_all()
                    f(b)
                rows.setdefault((bs, name), []).append((time.perf_counter() - t) / (len(batches) * bs))
    print(f"WordPiece ids, haps-bench dev queries, us per query (median of {args.passes} passes)")
    print("| way | batch 64 | batch 256 | x key table (64 / 256) |")
    print("|---|---|---|---|")
    for name in fns:
        med = [float(np.median(rows[(bs, name)])) * 1e6 for bs in (64, 256)]
        ref = [float(np.median(rows[(bs, "key table")])) * 1e6 for bs in (64, 256)]
        print(f"| {name} | {med[0]:.1f} | {med[1]:.1f} | {med[0] / ref[0]:.2f} / {med[1] / ref[1]:.2f} |")


if __name__ == "__main__":
    main()
