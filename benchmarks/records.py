"""What decision records and exploration cost on the call path (issue 17: off by default).

One `HAPSRunnable` call per query through the shipped default router, over canned LangChain
chat models (``FakeListChatModel``: the backend costs nothing, so what is timed is HAPS), in
five set-ups measured back to back on each query, in turn:

- ``route()`` alone (the router's own decision, no integration);
- ``HAPSRunnable`` with no store and no exploration (the default);
- the same with a SQLite store, and with a JSONL store (records written by the background
  writer; flushed after the timed calls, and counted);
- the same with epsilon-greedy exploration (epsilon 0.1) and no store.

It prints p50/p99 per set-up with the median of per-query ratios to the default set-up, and
checks the default set-up's decisions equal ``route()``'s on every query (decisions unchanged).

Usage: python benchmarks/records.py [--n 200] [--threads 1]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="queries timed (haps-bench dev, 20 words)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from langchain_core.language_models import FakeListChatModel

    from haps_core import HAPSRouter
    from haps_core.exploration import Exploration
    from haps_core.feedback import open_store
    from haps_integrations.langchain import HAPSRunnable

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from routing import workloads

    router = HAPSRouter.from_pretrained("haps-default")
    weight = float(router.default_cost_weight)
    queries = workloads(args.n)["short"][: args.n]
    backends = {name: FakeListChatModel(responses=["canned"]) for name in router.space.backend_names}
    with tempfile.TemporaryDirectory() as tmp:
        db, jsonl = Path(tmp) / "records.db", Path(tmp) / "records.jsonl"
        setups: dict[str, Any] = {
            "route() alone": lambda q: router.route([q], cost_weight=weight)[0],
            "HAPSRunnable, no store, no exploration (default)": HAPSRunnable(
                router=router, backends=backends, cost_weight=weight
            ),
            "HAPSRunnable, SQLite store": HAPSRunnable(
                router=router, backends=backends, cost_weight=weight, store=str(db)
            ),
            "HAPSRunnable, JSONL store": HAPSRunnable(
                router=router, backends=backends, cost_weight=weight, store=str(jsonl)
            ),
            "HAPSRunnable, epsilon-greedy 0.1": HAPSRunnable(
                router=router,
                backends=backends,
                cost_weight=weight,
                exploration=Exploration(kind="epsilon", epsilon=0.1, seed=0),
            ),
        }
        call = {
            name: (s if callable(s) and not hasattr(s, "invoke") else s.invoke) for name, s in setups.items()
        }
        for q in queries[:10]:  # warm-up: lazy init, the store's tables, the word table
            for fn in call.values():
                fn(q)
        times: dict[str, list[float]] = {name: [] for name in call}
        same = 0
        for q in queries:
            out = {}
            for name, fn in call.items():
                start = time.perf_counter()
                out[name] = fn(q)
                times[name].append(time.perf_counter() - start)
            chosen = out["HAPSRunnable, no store, no exploration (default)"].response_metadata["haps"]
            same += chosen["action_index"] == out["route() alone"].action_index
        for s in setups.values():
            if hasattr(s, "flush_records"):
                s.flush_records()
        counts = {}
        for name, spec in (("SQLite", db), ("JSONL", jsonl)):
            store = open_store(str(spec))
            counts[name] = len(store.records())
            store.close()
    default = np.asarray(times["HAPSRunnable, no store, no exploration (default)"])
    print(
        f"\nrecords and exploration on the call path: {len(queries)} 20-word haps-bench dev queries, "
        f"canned backends, torch {torch.get_num_threads()} thread(s)\n"
    )
    print("| set-up | p50 ms | p99 ms | per-query ratio to the default (median) |\n|---|---|---|---|")
    for name, t in times.items():
        arr = np.asarray(t)
        print(
            f"| {name} | {np.percentile(arr, 50) * 1e3:.3f} | {np.percentile(arr, 99) * 1e3:.3f} | "
            f"{float(np.median(arr / default)):.2f}x |"
        )
    total = len(queries) + 10
    print(
        f"\ndefault set-up's decision == route()'s: {same}/{len(queries)} queries; records written: "
        f"SQLite {counts['SQLite']}/{total}, JSONL {counts['JSONL']}/{total}"
    )


if __name__ == "__main__":
    main()
