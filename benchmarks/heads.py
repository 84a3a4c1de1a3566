"""The router heads alone: torch's fused path against the numpy small-batch path, ONE table.

Times, per router and batch size, the heads and ensemble mean as `HAPSRouter.predict_with_spread`
runs them (features already computed): the torch path (`FusedRouterHeads`) at every size, and
the numpy path (`haps_core.model.small_batch`) at the sizes it serves. The two paths alternate
within each repetition and the fastest repetition counts, so the columns compare at one moment of
a noisy machine. Inputs are haps-bench dev queries' features.

Usage: python benchmarks/heads.py [--router DIR ...] [--threads N]
"""

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from routing import workloads  # noqa: E402  (benchmarks/routing.py)

SIZES = (1, 2, 64, 256)


def torch_path(router: Any) -> Callable[[torch.Tensor], Any]:
    from haps_core.model.fused import ensemble_mean, spread_of

    heads = router._inference_heads()

    @torch.inference_mode()
    def run(x: torch.Tensor) -> Any:
        q_members, c_members = heads.member_outputs(x)
        q, c = ensemble_mean(q_members, c_members)
        return torch.sigmoid(q).numpy(), torch.exp(c).numpy(), spread_of(torch.sigmoid(q_members)).numpy()

    return run


def numpy_path(router: Any) -> Callable[[torch.Tensor], Any]:
    from haps_core.model.small_batch import ensemble_predictions, small_batch_heads

    twin = small_batch_heads(router._inference_heads())
    if twin is None:
        raise SystemExit("this router's heads have no numpy path (the no_pgn ablation)")

    def run(x: torch.Tensor) -> Any:
        quality, log_cost, spread = ensemble_predictions(*twin.member_outputs(x.numpy()))
        return quality, np.exp(log_cost), spread

    return run


def per_query_us(fn: Callable[[torch.Tensor], Any], batches: list[torch.Tensor]) -> float:
    start = time.perf_counter()
    for x in batches:
        fn(x)
    return (time.perf_counter() - start) / sum(len(x) for x in batches) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--router", action="append", default=[], help="checkpoint folder (default: the shipped one)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from haps_core.model import load_router_folder
    from haps_core.model.small_batch import SMALL_BATCH
    from haps_core.paths import default_router_dir

    texts = workloads(512)["bench"]
    print(f"router heads, us per query (fastest of {args.repeats}); torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; numpy path up to {SMALL_BATCH} queries")  # fmt: skip
    print("| router | batch | torch (fused) | numpy (small batch) |")
    print("|---|---|---|---|")
    for folder in args.router or [str(default_router_dir())]:
        router = load_router_folder(folder, device="cpu", local_files_only=True)
        features = router.featurize(texts)
        paths = {"torch": torch_path(router), "numpy": numpy_path(router)}
        cfg = router.config
        name = f"{Path(folder).name} ({cfg.members} x {cfg.hidden})"
        for size in SIZES:
            n = 64 if size <= 2 else len(texts)
            batches = [features[s : s + size] for s in range(0, n, size)]
            use = ["torch", "numpy"] if size <= SMALL_BATCH else ["torch"]
            for key in use:  # warm-up
                per_query_us(paths[key], batches[:4])
            best = dict.fromkeys(use, float("inf"))
            for _ in range(args.repeats):  # the paths alternate, so they share each moment
                for key in use:
                    best[key] = min(best[key], per_query_us(paths[key], batches))
            numpy_cell = f"{best['numpy']:.1f}" if "numpy" in best else "-"
            print(f"| {name} | {size} | {best['torch']:.1f} | {numpy_cell} |")


if __name__ == "__main__":
    main()
