"""Which query encoder should the router use? Quality and cost of each, in ONE run, ONE table (issue 18).

Trains the router on haps-bench with each encoder, with the settings of the Makefile's
``default-router`` target (holdout 0.2 seed 0, training seed 0, built-in prompt styles), and
prints per encoder: pooled dev AIQ with a paired bootstrap against MiniLM (fp32), route()
p50/p99 at batch 1 (20-word queries and haps-bench queries), queries/s at batch 1/64/256 on
haps-bench queries, cold ``haps route`` start beside ``python -c "import torch"``, the cold
process's peak RSS, and checkpoint + encoder size on disk.

Encoders: ``minilm`` (the bundled MiniLM, float32), ``minilm-int8`` (dynamic int8 Linear
layers), ``minilm-onnx`` and ``minilm-onnx-int8`` (its forward pass on ONNX Runtime, float32
or int8 weights: the onnx extra), ``static`` (`haps_core.encoders.static`, distilled from
MiniLM). A MiniLM variant with ``--reuse NAME=haps_core/default_router_minilm`` serves the
shipped MiniLM router through that variant. Trained routers are
kept in ``out/encoders/<name>`` and reused (``--retrain`` trains again); ``--reuse NAME=DIR``
takes an existing checkpoint instead (e.g. ``minilm=haps_core/default_router`` when the shipped
router is the MiniLM one trained by ``make default-router``). ``--quick``: 3 training epochs and
fewer timed queries (a smoke run; its AIQ is not the decision's).

Usage: python benchmarks/encoders.py [--encoders minilm,static] [--quick] [--retrain]
       [--reuse minilm=DIR] [--threads N] [--json out.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
ENCODERS = ("minilm", "minilm-int8", "minilm-onnx", "minilm-onnx-int8", "static", "static-refined")
# the router size `make default-router` trains (--members 3 --hidden 64)
MEMBERS, HIDDEN = 3, 64
# the `--encoder-precision` a MiniLM-based name stands for
PRECISION_OF = {"minilm-int8": "int8", "minilm-onnx": "onnx-fp32", "minilm-onnx-int8": "onnx-int8"}
AIQ_MARGIN = 0.005  # the default is the fastest encoder not below MiniLM's pooled AIQ by more
COLD_QUERY = "What is the capital of France?"
COLD_SCRIPT = (
    "import sys\n"
    "from haps_core.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "hwm = [s for s in open('/proc/self/status') if s.startswith('VmHWM')]\n"
    "print(f'peak_rss_kb={hwm[0].split()[1] if hwm else \"nan\"}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def make_encoder(name: str, log: Any = None, folder: Path | None = None) -> Any:
    """The encoder of that name, on CPU (``static-refined``: refined on `log`'s train split into
    ``folder/refined-encoder``, or read from there when a previous run wrote it)."""
    from haps_core.encoders import load_encoder, optimize_encoder

    if name == "minilm":
        return load_encoder(None, device="cpu")
    if name in PRECISION_OF:
        return optimize_encoder(load_encoder(None, device="cpu"), PRECISION_OF[name])
    if name == "static":
        return load_encoder("static-minilm")
    if name == "static-refined" and log is not None and folder is not None:
        from haps_core.encoders.refine import refine_static
        from haps_core.logs import split_queries

        where = folder.parent / f"{folder.name}-encoder"
        if (where / "config.json").is_file():
            return load_encoder(str(where))
        print(f"refining the static encoder on the train split into {where} ...", file=sys.stderr)
        train = ~split_queries(log.query_ids, 0.2, seed=0)
        return refine_static(load_encoder("static-minilm"), log, train, where, seed=0)
    raise SystemExit(f"--encoders: unknown encoder {name!r}; allowed: {', '.join(ENCODERS)}")


def train_or_load(name: str, log: Any, folder: Path, retrain: bool, epochs: int | None) -> Any:
    """The router trained with encoder `name` (from `folder` when it holds one), encoder attached."""
    from haps_core.encoders import CachedEncoder
    from haps_core.model import RouterConfig, load_router_folder
    from haps_core.paths import default_cache_dir
    from haps_core.training import TrainingConfig, fit

    if retrain and name == "static-refined":
        import shutil

        shutil.rmtree(folder.parent / f"{folder.name}-encoder", ignore_errors=True)  # --retrain asked
    encoder = make_encoder(name, log, folder)
    if retrain or not (folder / "config.json").is_file():
        print(f"training the {name} router into {folder} ...", file=sys.stderr)
        cached = CachedEncoder(encoder, default_cache_dir() / "embeddings")
        config = TrainingConfig(
            seed=0, device="cpu", progress=False, **({"epochs": epochs} if epochs else {})
        )
        router = fit(
            log, encoder=cached, training_config=config, holdout_fraction=0.2, holdout_seed=0,
            device="cpu", prompt_styles="builtin", router_config=RouterConfig(members=MEMBERS, hidden=HIDDEN),
        )  # fmt: skip
        router.save_pretrained(folder)
    router = load_router_folder(folder, device="cpu", load_encoder=False)
    router.attach_encoder(encoder)
    return router.eval()


def pooled_quality(routers: dict[str, Any], log: Any) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Pooled dev AIQ per router, and the paired bootstrap of each against ``minilm``."""
    from haps_core.evaluation import run_evaluation
    from haps_core.logs import split_queries
    from haps_core.training import aligned_predictor

    test = split_queries(log.query_ids, 0.2, seed=0)
    predictors, embeddings = {}, None
    for name, router in routers.items():
        features = router.featurize(log.queries)
        embeddings = features.numpy() if embeddings is None else embeddings
        predictors[name] = aligned_predictor(router, log, features)
    compare = [(n, "minilm") for n in routers if n != "minilm" and "minilm" in routers]
    report = run_evaluation(log, embeddings, test, predictors, model_only=(), compare=compare, n_boot=1000)
    aiq = {n: report.pooled[n]["aiq"] for n in routers}
    return aiq, report.pooled_comparisons


def timed(fn: Callable[[], Any]) -> float:
    from haps_core.memo import clear_all

    clear_all()  # no batch memo (haps_core.memo) carried over: a repeated batch is timed in full
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def latency(router: Any, texts: list[str], weight: float) -> list[float]:
    """Seconds of route() per query at batch 1 (after 5 warm-up calls)."""
    for t in texts[:5]:
        router.route([t], cost_weight=weight)
    return [timed(lambda t=t: router.route([t], cost_weight=weight)) for t in texts]


def throughput(router: Any, texts: list[str], batch: int, weight: float, warm: list[str]) -> float:
    """route() queries/s at this batch size over `texts`, the faster of 2 passes. Warm-up and the
    static encoder's word table come from `warm` (other queries), as in benchmarks/routing.py."""
    from routing import warm_words

    router.route(warm[:batch], cost_weight=weight)
    best = float("inf")
    for _ in range(2):
        warm_words(warm)
        total = sum(
            timed(lambda s=s: router.route(texts[s : s + batch], cost_weight=weight))
            for s in range(0, len(texts), batch)
        )
        best = min(best, total)
    return len(texts) / best


def cold_start(argv: list[str], repeats: int) -> tuple[float, float, float]:
    """(median wall s of a cold ``haps`` process with `argv`, of ``python -c "import torch"``, and
    the cold process's peak RSS in MB, its VmHWM: Linux only).

    The two alternate, so load on the machine shifts both alike.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ours, torch_only, rss = [], [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True, env=env)
        torch_only.append(time.perf_counter() - start)
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", COLD_SCRIPT, *argv], check=True, env=env, capture_output=True, text=True
        )
        ours.append(time.perf_counter() - start)
        line = [s for s in out.stderr.splitlines() if s.startswith("peak_rss_kb=")]
        rss = max(rss, float(line[-1].split("=")[1]) / 1024 if line else float("nan"))
    return statistics.median(ours), statistics.median(torch_only), rss


def disk_mb(name: str, folder: Path, router: Any) -> tuple[float, float]:
    """(router checkpoint MB, encoder files MB) on disk."""
    ckpt = sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 2**20
    enc = router.encoder
    if name == "static-refined":  # its files travel inside the checkpoint (encoder/)
        where = folder / "encoder"
    elif name == "static":
        where = Path(enc.folder)
    else:
        from haps_core.encoders.load import default_model_path

        where = default_model_path()
    files = [p for p in where.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json", ".txt")]
    return ckpt, sum(p.stat().st_size for p in files) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoders", default=",".join(ENCODERS), help=f"subset of {','.join(ENCODERS)}")
    parser.add_argument("--quick", action="store_true", help="3 epochs, fewer timed queries (smoke run)")
    parser.add_argument("--retrain", action="store_true", help="train again even where a router is kept")
    parser.add_argument(
        "--reuse", action="append", default=[], metavar="NAME=DIR", help="use this checkpoint"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    names = [n for n in args.encoders.split(",") if n]
    if bad := sorted(set(names) - set(ENCODERS)):
        raise SystemExit(f"--encoders: unknown {bad}; allowed: {', '.join(ENCODERS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    from haps_core.logs import read_logs
    from haps_core.paths import bench_logs, bench_prices

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from routing import workloads  # the same query sets as benchmarks/routing.py

    reuse = dict(item.split("=", 1) for item in args.reuse)
    load0 = os.getloadavg()[0]
    log = read_logs(bench_logs(), prices=bench_prices())
    out = ROOT / "out" / ("encoders-quick" if args.quick else "encoders")
    folders = {n: Path(reuse.get(n, out / n)) for n in names}
    routers = {
        n: train_or_load(n, log, folders[n], args.retrain and n not in reuse, 3 if args.quick else None)
        for n in names
    }
    aiq, comps = pooled_quality(routers, log)
    n = 60 if args.quick else 256
    texts = workloads(n)
    batched = workloads(256)  # 256 dev queries for the q/s row, whatever --quick says
    weight = float(next(iter(routers.values())).default_cost_weight)
    rows: dict[str, dict[str, str]] = {}
    raw: dict[str, Any] = {}
    for name, router in routers.items():
        short = latency(router, texts["short"][: n // 2], weight)
        bench = latency(router, texts["bench"][: n // 2], weight)
        qps = {b: throughput(router, batched["bench"], b, weight, batched["train"]) for b in (1, 64, 256)}
        argv = ["route", "--router", str(folders[name]), "--query", COLD_QUERY]
        if name in PRECISION_OF:
            argv += ["--encoder-precision", PRECISION_OF[name]]
        cold, torch_cold, rss = cold_start(argv, 2 if args.quick else 5)
        ckpt, enc_mb = disk_mb(name, folders[name], router)
        comp = comps.get(f"{name} vs minilm")
        verdict = "reference"
        if comp is not None:
            verdict = f"{comp['diff']:+.4f} +- {comp['se']:.4f} (z {comp['z']:.2f})"
            verdict += " ok" if comp["diff"] >= -AIQ_MARGIN else " BELOW"
        rows[name] = {
            "pooled dev AIQ": f"{aiq[name]:.4f}",
            "dAIQ vs minilm (paired bootstrap)": verdict,
            "route() p50 / p99 ms, batch 1, 20 words": f"{np.percentile(short, 50) * 1e3:.2f} / "
            f"{np.percentile(short, 99) * 1e3:.2f}",
            "route() p50 / p99 ms, batch 1, haps-bench": f"{np.percentile(bench, 50) * 1e3:.2f} / "
            f"{np.percentile(bench, 99) * 1e3:.2f}",
            "q/s haps-bench, batch 1 / 64 / 256": " / ".join(f"{qps[b]:.0f}" for b in (1, 64, 256)),
            "cold `haps route` s (import torch s, ratio)": (
                f"{cold:.2f} ({torch_cold:.2f}, {cold / torch_cold:.2f}x)"
            ),
            "peak RSS of cold `haps route`, MB": f"{rss:.0f}",
            "checkpoint + encoder on disk, MB": f"{ckpt:.1f} + {enc_mb:.1f}",
        }
        raw[name] = {
            **{"aiq": aiq[name], "comparison": comp, "short_s": short, "bench_s": bench, "qps": qps},
            **{"cold_s": cold, "torch_cold_s": torch_cold, "rss_mb": rss, "ckpt_mb": ckpt, "enc_mb": enc_mb},
        }
    load1 = os.getloadavg()[0]
    print(
        f"\nencoder benchmark on haps-bench ({log.n_queries} queries, dev split 0.2 seed 0); "
        f"{'QUICK (3 epochs where trained here, fewer timed queries) ' if args.quick else ''}"
        f"torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {load0:.1f} -> {load1:.1f}\n"
    )
    print("| measure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for what in next(iter(rows.values())):
        print(f"| {what} | " + " | ".join(rows[n][what] for n in names) + " |")
    ok = [
        n
        for n in names
        if n == "minilm" or (comps.get(f"{n} vs minilm") or {}).get("diff", -1) >= -AIQ_MARGIN
    ]
    fastest = max(ok, key=lambda n: raw[n]["qps"][64]) if ok else None
    print(f"\ndefault by the issue's rule (fastest at batch 64 within {AIQ_MARGIN} AIQ of minilm): {fastest}")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, default=float), encoding="utf-8")


if __name__ == "__main__":
    main()
