"""Where a routing call's time goes: each step of `HAPSRouter.route`, timed alone, ONE table.

For batch 1 (20-word haps-bench dev questions) and batch 256 (haps-bench dev queries), times
`route()` whole and then each step it takes on the same texts, every call after clearing the
per-batch memo (so no step reuses another's tokens): the tokenizer alone (for scale), featurising
(of which: the static encoder, the structural features), the input-cost counts, the heads with
the ensemble mean, building the decisions, the OOD evidence, and checking that the weights did
not change since the heads were fused. Steps timed alone run on warm caches; within `route()`
they evict each other's weights, so the steps add up to less than the whole. The word table is
warmed with train-split queries first, as `routing.py --floors-only` does.

Usage: python benchmarks/stages.py [--router DIR] [--threads N]
"""

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from routing import timed, tokenizer_only, warm_words, workloads  # noqa: E402  (benchmarks/routing.py)

Step = tuple[str, Callable[[list[str]], Any]]


def steps(router: Any) -> tuple[list[Step], Callable[[list[str]], dict[str, Any]]]:
    """The timed steps, and the function that gives the later steps their (precomputed) inputs."""
    from haps_core.decision import route_from_predictions
    from haps_core.features import structural_features
    from haps_core.model.input_cost import text_counts
    from haps_core.model.ood import evidence

    tok = tokenizer_only(router.encoder)
    cached: dict[tuple[str, ...], dict[str, Any]] = {}

    def predictions(texts: list[str]) -> dict[str, Any]:
        """A batch's features, counts and predictions (computed once: the later steps' inputs)."""
        key = tuple(texts)
        if key not in cached:
            features = router.featurize(texts)
            counts = text_counts(texts)
            cached[key] = {
                "features": features,
                "counts": counts,
                "pred": router.predict_with_spread(features, counts),
            }
        return cached[key]

    def inputs(texts: list[str]) -> tuple[Any, Any]:
        got = predictions(texts)
        return got["features"], got["counts"]

    def pred(texts: list[str]) -> tuple[Any, Any]:
        quality, cost, _ = predictions(texts)["pred"]
        return quality, cost

    return [
        ("route() whole", lambda t: router.route(t, cost_weight=0.0)),
        ("tokenizer alone (for scale)", tok),
        ("featurize", router.featurize),
        ("  of which the encoder", router.encoder.encode),
        ("  of which structural features", structural_features),
        ("input-cost counts", text_counts),
        ("heads + ensemble mean", lambda t: router.predict_with_spread(*inputs(t))),
        ("decisions", lambda t: route_from_predictions(router.space, *pred(t), cost_weight=0.0)),
        ("OOD evidence", lambda t: evidence(router, predictions(t)["features"])),
        ("weights check (fused heads' key)", lambda t: router._inference_heads()),
    ], predictions  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--router", default=None, help="checkpoint folder (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from haps_core.model import load_router_folder
    from haps_core.model.threads import torch_threads
    from haps_core.paths import default_router_dir

    folder = args.router or str(default_router_dir())
    router = load_router_folder(folder, device="cpu", local_files_only=True)
    texts = workloads(512)
    warm_words(texts["train"])
    plans = {1: [[t] for t in texts["short"][:200]], 256: [texts["bench"][s : s + 256] for s in (0, 256)]}
    table, predictions = steps(router)
    for batches in plans.values():  # the later steps' inputs, before anything is timed
        for batch in batches:
            predictions(batch)
    threads = router.routing_threads or torch.get_num_threads()
    print(f"route() step by step, {folder}; us per query (median over calls, {args.repeats} passes); "
          f"torch {torch.__version__}, every step on {threads} torch threads (as route())")  # fmt: skip
    print("| step | batch 1 | batch 256 |")
    print("|---|---|---|")
    results: dict[str, dict[int, float]] = {}
    with torch_threads(router.routing_threads):  # the steps alone on the threads route() uses
        time_steps(plans, table, results, args.repeats)
    for name, row in results.items():
        print(f"| {name} | {row[1]:.1f} | {row[256]:.1f} |")


def time_steps(
    plans: dict[int, list[list[str]]], table: list[Step], results: dict[str, dict[int, float]], repeats: int
) -> None:
    """Each step's median us per query over `repeats` passes of each batch size's batches."""
    for size, batches in plans.items():
        for batch in batches[:4]:  # warm-up
            for _, fn in table:
                fn(batch)
        for name, fn in table:
            per_call = [timed(lambda b=b, fn=fn: fn(b))[0] for _ in range(repeats) for b in batches]
            results.setdefault(name, {})[size] = float(np.median(per_call)) / size * 1e6


if __name__ == "__main__":
    main()
