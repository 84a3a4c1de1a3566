"""How small can the default router be? Quality and speed of each size, in ONE run, ONE table.

Trains the static-minilm router on haps-bench at each ensemble size x trunk width with
``haps train`` and the settings of the Makefile's ``default-router`` target (holdout 0.2 seed 0,
training seed 0, built-in prompt styles), then prints per size: how many members kept deep heads,
parameters, pooled dev AIQ with a paired bootstrap against the shipped MiniLM router (the rule of
issue 18: within 0.005), and ``route()`` queries/s at batch 256 and p50 at batch 1 (20-word
queries), timed one size after the other. Routers are kept in ``out/router_size/<members>x<width>``
and reused (``--retrain`` trains again).

The sizes are scored on the dev split that also picks among them: the chosen size's AIQ is
slightly optimistic (a handful of candidates, one seed).

Usage: python benchmarks/router_size.py [--sizes 5x256,3x64] [--retrain] [--threads N]
"""

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from encoders import make_encoder, pooled_quality  # noqa: E402  (benchmarks/encoders.py)
from routing import pct, timed, warm_words, workloads  # noqa: E402  (benchmarks/routing.py)

SIZES = "5x256,3x256,5x128,3x128,5x64,3x64"
DATA = ROOT / "haps_core" / "data" / "haps_bench"


def train(members: int, width: int, folder: Path, retrain: bool) -> None:
    """`haps train` as `make default-router` runs it, at this size (skipped when kept)."""
    from haps_core.cli import main

    if (folder / "config.json").is_file() and not retrain:
        return
    print(f"training {members} x {width} into {folder} ...", file=sys.stderr)
    argv = ["train", "--logs", str(DATA / "logs.jsonl.gz"), "--prices", str(DATA / "prices.json"),
            "--holdout-fraction", "0.2", "--holdout-seed", "0", "--seed", "0", "--prompt-styles", "builtin",
            "--encoder", "static-minilm", "--members", str(members), "--hidden", str(width),
            "--output", str(folder), "--overwrite", "-q"]  # fmt: skip
    if main(argv) != 0:
        raise SystemExit(f"haps train failed for {members} x {width}")


def speed(router: Any, texts: dict[str, list[str]]) -> tuple[float, float]:
    """(route() queries/s at batch 256 on haps-bench dev queries, p50 ms at batch 1 on 20-word ones)."""
    bench = texts["bench"]
    warm_words(texts["train"])
    for s in range(0, len(bench), 256):  # warm-up
        router.route(bench[s : s + 256], cost_weight=0.0)
    best = min(
        sum(
            timed(lambda c=bench[s : s + 256]: router.route(c, cost_weight=0.0))[0]
            for s in range(0, len(bench), 256)
        )
        for _ in range(3)
    )
    short = texts["short"][:200]
    for t in short[:10]:
        router.route([t], cost_weight=0.0)
    lat = [timed(lambda t=t: router.route([t], cost_weight=0.0))[0] for t in short]
    return len(bench) / best, pct(lat, 50) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=SIZES, help=f"MEMBERSxWIDTH, comma-separated (default {SIZES})")
    parser.add_argument("--retrain", action="store_true", help="train again even where a router is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from haps_core.logs import read_logs
    from haps_core.model import load_router_folder

    sizes = []
    for item in (s for s in args.sizes.split(",") if s):
        try:
            members, width = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise SystemExit(f"--sizes: {item!r} is not MEMBERSxWIDTH (e.g. 3x64)") from None
        sizes.append((members, width))
    out = ROOT / "out" / "router_size"
    routers: dict[str, Any] = {}
    minilm = load_router_folder(
        ROOT / "haps_core" / "default_router_minilm", device="cpu", load_encoder=False
    )
    routers["minilm"] = minilm.attach_encoder(make_encoder("minilm")).eval()
    static = make_encoder("static")
    for members, width in sizes:
        folder = out / f"{members}x{width}"
        train(members, width, folder, args.retrain)
        router = load_router_folder(folder, device="cpu", load_encoder=False)
        routers[f"{members}x{width}"] = router.attach_encoder(static).eval()
    log = read_logs([DATA / "logs.jsonl.gz"], prices=DATA / "prices.json")
    aiq, comparisons = pooled_quality(routers, log)
    texts = workloads(500)
    rows = []
    for name, router in routers.items():
        if name == "minilm":
            continue
        qps, p50 = speed(router, texts)
        c = comparisons[f"{name} vs minilm"]
        heads = router._inference_heads()
        n_params = sum(p.numel() for p in router.parameters())
        rows.append((name, f"{heads.n_deep} of {heads.n_members}", f"{n_params:,}", f"{aiq[name]:.4f}",
                     f"{c['diff']:+.4f} +- {c['se']:.4f}", "yes" if c["diff"] >= -0.005 else "no",
                     f"{qps:.0f}", f"{p50:.2f}"))  # fmt: skip
    head = ("size", "deep members", "parameters", "pooled dev AIQ", "dAIQ vs MiniLM", "within 0.005",
            "q/s at 256", "p50 ms at 1")  # fmt: skip
    print(f"\nrouter sizes on haps-bench (static-minilm; the MiniLM router's pooled dev AIQ "
          f"{aiq['minilm']:.4f}); torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
