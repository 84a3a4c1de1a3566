"""Training time and memory (issue 8): haps-bench, and synthetic logs up to 1M rows x 100 actions.

Prints ONE table. Every configuration runs in its own subprocess, so its peak RSS is its own.

1. haps-bench, frozen MiniLM with cached embeddings (embedding excluded from training time and
   reported apart): `fit_router` with members=1 and with the default ensemble (5), default
   `TrainingConfig` (60 epochs max, early stopping, 300 warm-up steps of the linear path).
2. Synthetic logs: features are random unit vectors (no encoder), outcomes a `RoutingLog` built
   from numpy arrays with 10 observed actions per query (sparse: 10% of cells at 100 actions),
   at 100k / 300k / 1M rows x 20 / 100 actions. Reported: the pivot to the sparse outcome table
   (`log.outcomes()`), one warm-up step of the linear path (the trainer runs
   `skip_warmup_steps` = 300 of them per member), one training epoch (members=1, batch 64), the
   held-out (early-stopping) evaluation after it, the dense blocks the trainer cuts out of the
   sparse table, and peak RSS. No dense matrix of the whole log is ever built: training batches
   are dense per batch; the warm-up takes full-batch steps while the training split fits in
   `training.batches.MAX_DENSE_CELLS` (query, action) cells and steps through blocks of that size
   beyond; the held-out evaluation runs blocks of at most
   `training.batches.EVAL_BLOCK_QUERIES` queries.
   So memory stays flat as the log grows (beyond the log, its sparse table and the features).
3. Data-parallel: the 300k x 100 epoch in one process and with `--ddp` gloo ranks under torchrun
   (one thread each, back to back), global batch 64 split across ranks.

Usage: python benchmarks/training.py [--threads N] [--quick] [--skip-bench] [--ddp 2] [--json out.json]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OBS_PER_QUERY = 10
DIM = 384


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# One configuration (run in a subprocess)


def synthetic_log(n_rows: int, n_actions: int, seed: int = 0) -> tuple[Any, torch.Tensor]:
    """A sparse synthetic log (RoutingLog from numpy arrays) and unit-vector features."""
    from haps_core.catalog import Action, RoutingSpace
    from haps_core.logs import RoutingLog

    rng = np.random.default_rng(seed)
    n_backends = 10
    per = n_actions // n_backends
    temps = np.round(np.linspace(0.0, 1.5, per), 3)
    actions = [
        Action.make(f"m{b}", temperature=float(t), prompt_style="cot")
        for b in range(n_backends)
        for t in temps
    ]
    prices = {f"m{b}": (0.1 * 2**b, 0.3 * 2**b) for b in range(n_backends)}
    space = RoutingSpace.from_actions(actions, prices)
    n_queries = n_rows // OBS_PER_QUERY
    row_query = np.repeat(np.arange(n_queries, dtype=np.int32), OBS_PER_QUERY)
    # distinct actions per query: a random offset and stride through the action list
    start = rng.integers(0, n_actions, n_queries)
    stride = rng.integers(1, 4, n_queries)
    row_action = ((start[:, None] + stride[:, None] * np.arange(OBS_PER_QUERY)) % n_actions).astype(np.int32)
    feats = rng.standard_normal((n_queries, DIM), dtype=np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    w = rng.standard_normal((DIM, n_actions), dtype=np.float32) / 4
    logits = np.take_along_axis(feats @ w, row_action.astype(np.int64), axis=1)
    score = (rng.random(logits.shape) < 1 / (1 + np.exp(-logits))).astype(np.float64).ravel()
    backend = np.asarray(space.backend_index())[row_action.ravel()]
    cost = 1e-4 * 2.0**backend * rng.uniform(0.5, 1.5, n_rows)
    log = RoutingLog(
        space=space,
        query_ids=[f"q{i}" for i in range(n_queries)],
        queries=[f"synthetic query {i}" for i in range(n_queries)],
        row_query=row_query,
        row_action=row_action.ravel(),
        score=score,
        cost=cost,
        groups=np.full(n_rows, "", dtype=object),
    )
    return log, torch.from_numpy(feats)


def run_synthetic(n_rows: int, n_actions: int, batch_size: int, warmup_steps: int) -> dict[str, Any]:
    """One synthetic configuration: pivot, warm-up steps, one epoch, the held-out evaluation."""
    from haps_core import HAPSRouter, RouterConfig
    from haps_core.training import FrozenFeatures, TrainingConfig, batches, train_router, trainer, warmup

    t0 = time.perf_counter()
    log, feats = synthetic_log(n_rows, n_actions)
    t_build = time.perf_counter() - t0
    rss_log = peak_rss_mb()
    t0 = time.perf_counter()
    table = log.outcomes()
    t_pivot = time.perf_counter() - t0
    rss_pivot = peak_rss_mb()
    torch.manual_seed(0)
    router = HAPSRouter(table.space, RouterConfig(embed_dim=DIM, use_structural=False, members=1))
    config = TrainingConfig(
        epochs=1, batch_size=batch_size, skip_warmup_steps=0, progress=False, device="cpu"
    )
    n_q, n_a = table.shape
    n_stop = round(n_q * config.early_stopping_fraction)
    fit_q = np.arange(n_q - n_stop)

    # The warm-up of the linear path, apart: a full-batch step over the training split, or over
    # its next block when it holds more than MAX_DENSE_CELLS cells. Per step = (time of 1 + k
    # steps - time of 1 step) / k, so one-off costs (the starting biases' pass over the split,
    # first-call initialisation) are not counted per step. The L2 is fixed (no search).
    provider = FrozenFeatures(feats)

    def warm_up(steps: int) -> float:
        cfg = TrainingConfig(skip_warmup_steps=steps, skip_l2=1e-4, progress=False, device="cpu")
        start = time.perf_counter()
        warmup._warm_up_skip(router, 0, provider, table, fit_q, cfg, torch.device("cpu"))
        return time.perf_counter() - start

    t_first = warm_up(1)  # the process's first backward pass: one-off initialisation
    t_one = warm_up(1)
    t_warm = max(warm_up(1 + warmup_steps) - t_one, 0.0) / warmup_steps
    rss_warm = peak_rss_mb()

    # The held-out evaluation after each epoch runs on the whole early-stopping split at once.
    spent = {"eval": 0.0}

    def timed(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent["eval"] += time.perf_counter() - start

        return wrapper

    trainer.dev_regret = timed(trainer.dev_regret)  # what the trainer calls after each epoch
    trainer.dev_loss = timed(trainer.dev_loss)
    t0 = time.perf_counter()
    train_router(router, feats, table, np.arange(n_q), config)
    t_train = time.perf_counter() - t0
    per_cell = 8 + 8 + 1 + 4 + 4 + 1  # numpy score, cost, mask + their float32/bool torch copies
    warm_rows = min(n_q - n_stop, max(1, batches.MAX_DENSE_CELLS // n_a))
    eval_rows = min(n_stop, batches.EVAL_BLOCK_QUERIES)
    return {
        "rows": n_rows,
        "actions": n_actions,
        "queries": n_q,
        "cells": table.n_cells,
        "build_s": t_build,
        "pivot_s": t_pivot,
        "warm_up_first_s": t_first,
        "warm_up_step_s": t_warm,
        "epoch_s": t_train - spent["eval"],
        "eval_s": spent["eval"],
        "steps": -(-(n_q - n_stop) // batch_size),
        "dense_batch_mb": batch_size * n_a * per_cell / 2**20,
        "dense_warmup_mb": warm_rows * n_a * per_cell / 2**20,
        "dense_stop_mb": eval_rows * n_a * per_cell / 2**20,
        "full_dense_mb": n_q * n_a * per_cell / 2**20,
        # RouterNet.forward: every action through every backend's generated first layer,
        # [A, n_backends, B, k] float32 per evaluation block
        "eval_gather_mb": n_a * len(table.space.backends) * eval_rows * router.config.pgn_hidden * 4 / 2**20,
        "rss_log_mb": rss_log,
        "rss_pivot_mb": rss_pivot,
        "rss_warm_mb": rss_warm,
        "rss_peak_mb": peak_rss_mb(),
    }


def run_ddp_epoch(n_rows: int, n_actions: int, batch_size: int) -> dict[str, Any] | None:
    """One epoch of a synthetic log as one rank of a torchrun job; rank 0 returns the figures."""
    from haps_core import HAPSRouter, RouterConfig
    from haps_core.training import TrainingConfig, train_router, trainer
    from haps_core.training import distributed as ddp

    ctx = ddp.init_distributed("cpu")
    log, feats = synthetic_log(n_rows, n_actions)  # same seed: the same log on every rank
    table = log.outcomes()
    torch.manual_seed(0)
    router = HAPSRouter(table.space, RouterConfig(embed_dim=DIM, use_structural=False, members=1))
    spent = {"eval": 0.0}
    for name in ("dev_regret", "dev_loss"):
        fn = getattr(trainer, name)

        def wrapper(*args: Any, _fn: Any = fn, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _fn(*args, **kwargs)
            finally:
                spent["eval"] += time.perf_counter() - start

        setattr(trainer, name, wrapper)
    config = TrainingConfig(
        epochs=1, batch_size=batch_size, skip_warmup_steps=0, progress=False, device="cpu"
    )
    ddp.barrier()
    t0 = time.perf_counter()
    train_router(router, feats, table, np.arange(table.shape[0]), config)
    t_train = time.perf_counter() - t0
    out = {"world": ctx.world_size, "epoch_s": t_train - spent["eval"], "rss_peak_mb": peak_rss_mb()}
    ddp.cleanup()
    return out if ctx.is_main else None


def in_torchrun(nproc: int, *args: Any, threads: int | None = None) -> dict[str, Any]:
    """`run_ddp_epoch` under torchrun on 127.0.0.1 (gloo), one thread per rank by default."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc),
        "--master-addr", "127.0.0.1", "--master-port", str(port),
        __file__, "--one", "ddp", *map(str, args), "--threads", str(threads or 1),
    ]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads or 1),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"torchrun {args} failed:\n{proc.stderr[-4000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def run_bench(members: int) -> dict[str, Any]:
    from haps_core import RouterConfig
    from haps_core.encoders import embedding_encoder
    from haps_core.logs import read_logs, split_queries
    from haps_core.paths import bench_logs, bench_prices
    from haps_core.training import TrainingConfig, features_for, fit_router

    t0 = time.perf_counter()
    log = read_logs(bench_logs(), prices=bench_prices())
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    log.outcomes()
    t_pivot = time.perf_counter() - t0
    train = ~split_queries(log.query_ids, 0.2, seed=0)
    encoder = embedding_encoder(device="cpu")  # with the on-disk embedding cache
    t0 = time.perf_counter()
    feats = features_for(encoder, log.queries, True)
    t_embed = time.perf_counter() - t0
    rss_before = peak_rss_mb()
    cfg = RouterConfig(embed_dim=encoder.dim, members=members)
    t0 = time.perf_counter()
    router = fit_router(log, encoder, feats, train, cfg, TrainingConfig(progress=False, device="cpu"))
    t_train = time.perf_counter() - t0
    s = router.training_summary
    return {
        "members": members,
        "rows": log.n_rows,
        "queries": int(train.sum()),
        "actions": len(log.space),
        "read_s": t_read,
        "pivot_s": t_pivot,
        "embed_s": t_embed,
        "train_s": t_train,
        "epochs_run": s["epochs_run"],
        "s_per_epoch": t_train / max(s["epochs_run"], 1),
        "heldout_regret": s["heldout_regret"],
        "rss_before_train_mb": rss_before,
        "rss_peak_mb": peak_rss_mb(),
    }


# ---------------------------------------------------------------------------------------------
# Driver


def in_subprocess(kind: str, *args: Any, threads: int | None = None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--one", kind, *map(str, args)]
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="synthetic sizes up to 300k rows only")
    parser.add_argument("--skip-bench", action="store_true", help="skip the haps-bench runs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup-probe-steps", type=int, default=5, help="warm-up steps timed")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--ddp", type=int, default=2, help="ranks of the gloo DDP epoch (0: skip)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        kind, *rest = args.one
        if kind == "bench":
            out: dict[str, Any] | None = run_bench(int(rest[0]))
        elif kind == "ddp":
            out = run_ddp_epoch(*(int(x) for x in rest))
        else:
            out = run_synthetic(*(int(x) for x in rest))
        if out is not None:
            print(json.dumps(out))
        return

    load0 = os.getloadavg()[0]
    bench = [] if args.skip_bench else [in_subprocess("bench", m, threads=args.threads) for m in (1, 5)]
    sizes = (100_000, 300_000) if args.quick else (100_000, 300_000, 1_000_000)
    synth = [
        in_subprocess(
            "synthetic", rows, actions, args.batch_size, args.warmup_probe_steps, threads=args.threads
        )
        for actions in (20, 100)
        for rows in sizes
    ]
    ddp_rows = []
    if args.ddp > 1:  # the same epoch in one process, then data-parallel, back to back
        ddp_rows = [in_torchrun(n, sizes[1], 100, args.batch_size, threads=1) for n in (1, args.ddp)]
    load1 = os.getloadavg()[0]

    print(
        f"\ntraining benchmark: torch {torch.__version__}, "
        f"{args.threads or torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load average {load0:.1f} -> {load1:.1f}; every row its own process\n"
    )
    print(
        "| data | rows | queries x actions | read (build) / pivot s | training time | s per epoch "
        "| held-out eval per epoch | dense blocks MB: batch / warm-up block / eval block (whole log) "
        "| peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for b in bench:
        print(
            f"| haps-bench, members={b['members']}, frozen MiniLM (embedding {b['embed_s']:.1f} s, cached) "
            f"| {b['rows']:,} | {b['queries']:,} x {b['actions']} | {b['read_s']:.1f} / {b['pivot_s']:.3f} "
            f"| {b['train_s']:.1f} s, {b['epochs_run']} epochs (target < 60 s) | {b['s_per_epoch']:.2f} "
            f"| (in epoch) | - | {b['rss_before_train_mb']:.0f} -> {b['rss_peak_mb']:.0f} |"
        )
    base = {s["actions"]: s for s in synth if s["rows"] == sizes[0]}
    for s in synth:
        growth = s["epoch_s"] / base[s["actions"]]["epoch_s"]
        print(
            f"| synthetic, unit-vector features | {s['rows']:,} | {s['queries']:,} x {s['actions']} "
            f"({s['cells']:,} cells) | {s['build_s']:.1f} / {s['pivot_s']:.2f} "
            f"| warm-up: {s['warm_up_step_s']:.3f} s per step (x300 = "
            f"{300 * s['warm_up_step_s']:.0f} s; first step {s['warm_up_first_s']:.1f} s) "
            f"| {s['epoch_s']:.1f} ({s['steps']:,} steps of {args.batch_size}; {growth:.2f}x the "
            f"{sizes[0] // 1000}k-row epoch) | {s['eval_s']:.1f} s (PGN activations per block "
            f"{s['eval_gather_mb']:.0f} MB) "
            f"| {s['dense_batch_mb']:.2f} / {s['dense_warmup_mb']:.0f} / {s['dense_stop_mb']:.0f} "
            f"({s['full_dense_mb']:.0f}) | log {s['rss_log_mb']:.0f}, pivot {s['rss_pivot_mb']:.0f}, "
            f"warm-up {s['rss_warm_mb']:.0f}, peak {s['rss_peak_mb']:.0f} |"
        )
    for d in ddp_rows:
        speed = ddp_rows[0]["epoch_s"] / d["epoch_s"]
        print(
            f"| synthetic, {'one process' if d['world'] == 1 else 'DDP gloo'}: {d['world']} rank(s) x 1 "
            f"thread (torchrun, 127.0.0.1) | {sizes[1]:,} | {sizes[1] // OBS_PER_QUERY:,} x 100 | - | "
            f"global batch {args.batch_size} = {d['world']} x "
            f"{args.batch_size // d['world']} | {d['epoch_s']:.1f} ({speed:.2f}x the 1-rank epoch) | - | - "
            f"| rank 0: {d['rss_peak_mb']:.0f} |"
        )
    for actions in (20, 100):
        rows = [s for s in synth if s["actions"] == actions]
        if len(rows) > 1:
            slope = np.polyfit(np.log([r["rows"] for r in rows]), np.log([r["epoch_s"] for r in rows]), 1)[0]
            print(f"\nepoch time ~ rows^{slope:.2f} at {actions} actions", end="")
    a20 = {s["rows"]: s for s in synth if s["actions"] == 20}
    a100 = {s["rows"]: s for s in synth if s["actions"] == 100}
    ratios = [a100[r]["epoch_s"] / a20[r]["epoch_s"] for r in sizes if r in a20 and r in a100]
    print(f"; 100 vs 20 actions: {', '.join(f'{x:.2f}x' for x in ratios)} the epoch time")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"bench": bench, "synthetic": synth}, indent=1), encoding="utf-8"
        )


if __name__ == "__main__":
    main()
