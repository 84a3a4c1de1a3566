"""route() with the router heads eager (numpy / torch) and compiled (ONNX Runtime), interleaved.

The same router, queries and batches; each query or batch is routed under both runtimes back to
back, in alternating order, so the two see the same machine state; ONE table. Batch 1: 20-word
queries (the ``Question:`` line of haps-bench dev queries), p50 and p99; batches of 64 and 256:
haps-bench dev queries as logged, queries/s over all passes. The word tables are first filled
from train-split queries and the router first serves `COMPILE_AFTER` single queries, as in
`benchmarks/routing.py --floors-only`. Also: the heads alone on one query, warm and after
touching 8 MB (the state a routing call's other steps leave the caches in).

Usage: python benchmarks/heads_runtime.py [--router DIR] [--passes 3] [--n-single 300]
"""

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from routing import load_or_train_router, timed, warm_words, workloads  # noqa: E402  (benchmarks/routing.py)

from haps_core.model.compiled import COMPILE_AFTER  # noqa: E402
from haps_core.model.input_cost import text_counts  # noqa: E402
from haps_core.model.threads import check_threads, torch_threads  # noqa: E402

RUNTIMES = ("eager", "onnxruntime")


def paired(router: Any, runtimes: tuple[str, ...], call: Callable[[], Any], flip: bool) -> dict[str, float]:
    """Seconds of `call` under each runtime, back to back (the order flipped every other time)."""
    out = {}
    for rt in reversed(runtimes) if flip else runtimes:
        router.heads_runtime = rt
        out[rt] = timed(call)[0]
    return out


def heads_alone(router: Any, text: str) -> dict[str, tuple[float, float]]:
    """us of the heads on one query per runtime: (warm, after touching 8 MB)."""
    features, counts = router.featurize([text]), text_counts([text])
    junk = np.ones(8 << 20, dtype=np.uint8)
    out = {}
    for rt in RUNTIMES:
        router.heads_runtime = rt
        router.predict_with_spread(features, counts)
        warm, cold = [], []
        for i in range(400):
            if i % 2:
                junk.sum()
            start = time.perf_counter()
            router.predict_with_spread(features, counts)
            (cold if i % 2 else warm).append(time.perf_counter() - start)
        out[rt] = (float(np.median(warm)) * 1e6, float(np.median(cold)) * 1e6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--router", default=None, help="checkpoint folder (default: the shipped one)")
    parser.add_argument("--passes", type=int, default=3, help="passes over the batched queries")
    parser.add_argument("--n-single", type=int, default=300, help="20-word queries routed one by one")
    args = parser.parse_args()
    router, origin = load_or_train_router(args.router)
    texts = workloads(500)  # as routing.py: dev queries timed, train ones warm
    bench, short, train = texts["bench"], texts["short"][: args.n_single], texts["train"]
    warm_words(train)
    for t in train[: COMPILE_AFTER + 1]:
        for rt in RUNTIMES:
            router.heads_runtime = rt
            router.route([t], cost_weight=0.0)
    compiled = router._inference_heads().__dict__.get("_compiled")
    if not compiled:
        raise SystemExit("ONNX Runtime did not compile the heads: is the onnx extra installed?")
    with torch_threads(check_threads(router.routing_threads)):
        alone = heads_alone(router, short[0])
    single: dict[str, list[float]] = {rt: [] for rt in RUNTIMES}
    for i, t in enumerate(short):
        got = paired(router, RUNTIMES, lambda t=t: router.route([t], cost_weight=0.0), i % 2 == 1)
        for rt, sec in got.items():
            single[rt].append(sec)
    batched: dict[int, dict[str, float]] = {}
    for bs in (64, 256):
        total = dict.fromkeys(RUNTIMES, 0.0)
        n = 0
        for p in range(args.passes):
            for s in range(0, len(bench) - bs + 1, bs):
                chunk = bench[s : s + bs]
                flip = (p + s // bs) % 2 == 1
                got = paired(router, RUNTIMES, lambda c=chunk: router.route(c, cost_weight=0.0), flip)
                for rt, sec in got.items():
                    total[rt] += sec
                n += len(chunk)
        batched[bs] = {rt: n / sec for rt, sec in total.items()}
    print(
        f"\nroute() by heads runtime: router {origin}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; route() on {router.routing_threads} torch threads\n"
    )
    print("| measure | eager (numpy / torch) | ONNX Runtime | eager / ONNX Runtime |\n|---|---|---|---|")
    e, o = (np.asarray(single[rt]) * 1e3 for rt in RUNTIMES)
    for q in (50, 99):
        a, b = np.percentile(e, q), np.percentile(o, q)
        print(f"| route() p{q} ms, batch 1, 20-word queries | {a:.3f} | {b:.3f} | {a / b:.2f}x |")
    for bs, qps in batched.items():
        a, b = qps["eager"], qps["onnxruntime"]
        print(f"| route() queries/s, batch {bs}, haps-bench dev | {a:.0f} | {b:.0f} | {b / a:.2f}x (q/s) |")
    for i, what in enumerate(("warm caches", "after touching 8 MB")):
        a, b = alone["eager"][i], alone["onnxruntime"][i]
        print(f"| heads alone us, one query, {what} | {a:.0f} | {b:.0f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
