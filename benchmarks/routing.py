"""Routing overhead against the encoder's floor (issue 8), measured in ONE run, ONE table.

What a routing call costs on this machine, split into its parts, beside the query encoder's
forward pass alone (the floor no router on this encoder can go under):

- single query, per query: tokenize, encoder forward (the floor), encode (``featurize``: the
  tokenizer, the forward pass, pooling and the structural text features), router heads
  (``predict_features``: the fused path of `haps_core.model.fused`) beside the plain, unfused
  ``forward`` they replace, decision (``decide``), and whole routing paths: ``route()`` and the
  same with a bf16 or int8 encoder; p50/p95/p99, each beside its multiple of the floor;
- batched throughput of every path at batch 1, 8, 64, 256, beside the encoder's own;
- peak RSS;
- what bf16 weights, dynamic int8 quantisation, ``torch.compile`` and the embedding cache buy:
  encoder latency and throughput, embedding cosine to float32, and decision agreement with the
  float32 router (share of identical actions over ~500 queries at 6 cost weights).

Every comparison is paired (the things compared run back to back on the same query or batch;
ratios are medians of per-query ratios or ratios of summed times), so the ratios hold when other
processes load the machine; the absolute figures move with that load (printed in the header).
route() runs torch on the router's `routing_threads` (1 by default: `haps_core.model.threads`);
``--routing-threads N`` changes it (0: torch's own setting, ``--threads``), to compare. The
router first serves a few dozen single queries, as a serving process has: with ``--heads-runtime
auto`` (the default) its heads are then compiled for ONNX Runtime (`haps_core.model.compiled`);
``eager`` keeps them on numpy and torch.

Two workloads: ``bench``: haps-bench dev-split queries as logged (multiple-choice exam questions,
~220 tokens at the median, truncated at the encoder's 256); ``short``: the ``Question:`` line of
the same queries cut to 20 words (chat-style traffic, ~20 tokens). The router is the shipped
default (``haps_core/default_router``) when present, else ``--router DIR``, else one trained here
on the haps-bench train split (saved to out/bench-router and reused).

Issue 18's floors come first, in their own table, for any encoder (the static one included):
batched route() queries/s on haps-bench queries (floor 3,000), route() time over the
tokenizer's own time for the same batches (at most 2x), p50 at batch 1 on 20-word queries (at
most 1 ms) and a cold ``haps route --query`` beside ``python -c "import torch"`` in the same run
(at most 1.5x). The detailed table below them needs a transformer (`HFEncoder`) router.

Usage: python benchmarks/routing.py [--router DIR] [--threads N] [--routing-threads N]
       [--heads-runtime auto|onnxruntime|eager] [--n-latency 150]
       [--n-agree 500] [--n-batched 256] [--no-compile] [--floors-only] [--json out.json]
"""

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from haps_core import HAPSRouter, wordpiece
from haps_core.decision import cost_weight_grid
from haps_core.encoders import CachedEncoder, HFEncoder, bf16_supported, optimize_encoder
from haps_core.features import structural_features
from haps_core.memo import clear_all
from haps_core.model.compiled import COMPILE_AFTER, HEADS_RUNTIMES
from haps_core.model.input_cost import text_counts
from haps_core.wordpiece import clear_chunks, wordpiece_ids

ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZES = (1, 8, 64, 256)
TARGET_P50_MS = 15.0
TARGET_OVERHEAD = 0.10
TARGET_QPS = 300.0
FLOOR_QPS = 3000.0  # issue 18's floors
FLOOR_TOKENIZER_RATIO = 2.0
FLOOR_P50_MS = 1.0
FLOOR_COLD_RATIO = 1.5
N_PASSES = 5  # floors: passes over the timed queries (q/s from the fastest, ratios their median)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def ms3(values: Sequence[float]) -> str:
    """p50 / p95 / p99 in ms of a list of seconds."""
    return " / ".join(f"{pct(values, q) * 1e3:.2f}" for q in (50, 95, 99))


# ---------------------------------------------------------------------------------------------
# Set-up


def load_or_train_router(path: str | None) -> tuple[HAPSRouter, str]:
    """The router to measure and a line saying which one it is."""
    from haps_core.model import load_router_folder
    from haps_core.paths import default_router_dir

    candidates = [Path(path)] if path else [default_router_dir(), ROOT / "out" / "bench-router"]
    for folder in candidates:
        if (folder / "config.json").is_file():
            router = load_router_folder(folder, device="cpu", local_files_only=True)
            return router, f"loaded from {folder}"
    if path:
        raise SystemExit(f"no router checkpoint in {path}")
    from haps_core.encoders import embedding_encoder
    from haps_core.logs import read_logs, split_queries
    from haps_core.paths import bench_logs, bench_prices
    from haps_core.training import TrainingConfig, features_for, fit_router

    print("no shipped default router yet: training one on the haps-bench train split ...", file=sys.stderr)
    log = read_logs(bench_logs(), prices=bench_prices())
    train = ~split_queries(log.query_ids, 0.2, seed=0)
    encoder = embedding_encoder(device="cpu")
    features = features_for(encoder, log.queries, True)
    router = fit_router(log, encoder, features, train, training_config=TrainingConfig(progress=False))
    router.save_pretrained(candidates[-1])
    return load_router_folder(candidates[-1], device="cpu", local_files_only=True), "trained here"


def workloads(n: int) -> dict[str, list[str]]:
    """Distinct dev-split haps-bench queries, as logged and as short questions."""
    from haps_core.logs import read_logs, split_queries
    from haps_core.paths import bench_logs, bench_prices

    log = read_logs(bench_logs(), prices=bench_prices())
    dev = split_queries(log.query_ids, 0.2, seed=0)
    # dev-split queries first (the router never trained on them), then the rest if more are asked
    pool = [log.queries[i] for i in np.flatnonzero(dev)] + [log.queries[i] for i in np.flatnonzero(~dev)]
    bench = list(dict.fromkeys(pool))[:n]
    short: list[str] = []
    for text in pool:
        m = re.search(r"Question:\s*(.+)", text)
        line = (m.group(1) if m else text.strip().splitlines()[0]).split()
        q = " ".join(line[:20])
        if q and q not in short:
            short.append(q)
        if len(short) >= n:
            break
    seen = set(bench)
    train = [t for t in dict.fromkeys(log.queries[i] for i in np.flatnonzero(~dev)) if t not in seen]
    return {"short": short, "bench": bench, "train": train[:2000]}


def warm_words(texts: list[str]) -> None:
    """The WordPiece chunk table as a serving process has it: emptied, then filled by other
    traffic (`texts`, train-split queries: none of the timed ones)."""
    clear_chunks()
    for s in range(0, len(texts), 256):
        wordpiece_ids(texts[s : s + 256])
    clear_all()


def word_hit_rate(texts: list[str]) -> float:
    """Share of the pieces (words, punctuation) of `texts` already in the word tables."""
    return wordpiece.remembered_share(texts)


def tokenizer_only(enc: Any) -> Callable[[list[str]], Any]:
    """The encoder's tokenizer alone, called as the encoder calls it."""
    from haps_core.encoders import StaticEncoder

    if isinstance(enc, CachedEncoder):
        enc = enc.encoder
    if isinstance(enc, StaticEncoder):  # the call the static encoder makes: ids only, no offsets
        return lambda b: enc.tokenizer.encode_batch_fast(b, add_special_tokens=False)
    if isinstance(enc, HFEncoder):
        return lambda b: enc.tokenizer(b, truncation=True, max_length=enc.max_length)
    raise SystemExit(f"no tokenizer to compare with for a {type(enc).__name__}")


def floors(router: HAPSRouter, folder: Path, texts: dict[str, list[str]], weight: float) -> list[tuple]:
    """Issue 18's floors, paired where they are ratios: (what, measured, floor, met)."""
    from encoders import cold_start  # benchmarks/encoders.py

    tok = tokenizer_only(router.encoder)
    bench, train = texts["bench"], texts["train"]
    for b in (train[:64], train[:256]):  # warm-up (allocator, lazy init) on other queries
        router.route(b, cost_weight=weight)
        tok(b)
    for t in train[:COMPILE_AFTER]:  # a serving process's first calls: "auto" compiles the heads
        router.route([t], cost_weight=weight)
    warm_words(train)
    hit = word_hit_rate(bench)
    out = []
    for bs in (64, 256):
        passes = []  # (route, tokenizer) seconds of each pass over the timed queries
        for _ in range(N_PASSES):
            warm_words(train)  # each pass meets the timed queries' words as new traffic would
            t_route = t_tok = 0.0
            for s in range(0, len(bench), bs):
                chunk = bench[s : s + bs]
                t_tok += timed(lambda chunk=chunk: tok(chunk))[0]
                t_route += timed(lambda chunk=chunk: router.route(chunk, cost_weight=weight))[0]
            passes.append((t_route, t_tok))
        qps = len(bench) / min(r for r, _ in passes)  # the least disturbed pass
        out.append(
            (
                f"route() queries/s, haps-bench dev, batch {bs} (word table from {len(train)} train "
                f"queries: {hit:.0%} of the words found)",
                f"{qps:.0f}",
                f">= {FLOOR_QPS:.0f}",
                qps >= FLOOR_QPS,
            )
        )
        if bs == 256:
            t_cold = 0.0
            for s in range(0, len(bench), bs):
                clear_chunks()
                chunk = bench[s : s + bs]
                t_cold += timed(lambda chunk=chunk: router.route(chunk, cost_weight=weight))[0]
            out.append((f"  the same from an empty word table (every word tokenised), batch {bs}, one pass",
                        f"{len(bench) / t_cold:.0f}", "(no floor)", None))  # fmt: skip
        ratio = float(np.median([r / t for r, t in passes]))  # paired within each pass
        out.append(
            (
                f"route() / tokenizer time, same batches of {bs}",
                f"{ratio:.2f}x",
                f"<= {FLOOR_TOKENIZER_RATIO:.0f}x",
                ratio <= FLOOR_TOKENIZER_RATIO,
            )
        )
    short = texts["short"][:200]
    for t in short[:10]:
        router.route([t], cost_weight=weight)
    lat = [timed(lambda t=t: router.route([t], cost_weight=weight))[0] for t in short]
    p50 = pct(lat, 50) * 1e3
    out.append(("route() p50 ms, batch 1, 20-word queries (p99)", f"{p50:.3f} ({pct(lat, 99) * 1e3:.3f})",
                f"<= {FLOOR_P50_MS:.0f} ms", p50 <= FLOOR_P50_MS))  # fmt: skip
    cold, torch_cold, rss = cold_start(["route", "--router", str(folder), "--query", "What is 2 + 2?"], 5)
    out.append(
        ("cold `haps route --query` s / `python -c \"import torch\"` s (median of 5; peak RSS)",
         f"{cold:.2f} / {torch_cold:.2f} = {cold / torch_cold:.2f}x ({rss:.0f} MB)",
         f"<= {FLOOR_COLD_RATIO}x", cold / torch_cold <= FLOOR_COLD_RATIO)
    )  # fmt: skip
    return out


def heads_runtime_used(router: HAPSRouter) -> str:
    """What ran the router heads in the floors: ONNX Runtime or numpy/torch ("eager")."""
    compiled = router._inference_heads().__dict__.get("_compiled")
    return "ONNX Runtime" if compiled else "numpy/torch (eager)"


def base_encoder(router: HAPSRouter) -> HFEncoder:
    enc = router.encoder
    if isinstance(enc, CachedEncoder):
        enc = enc.encoder
    if not isinstance(enc, HFEncoder):
        raise SystemExit(f"the router's encoder is a {type(enc).__name__}, not an HFEncoder")
    return enc


# ---------------------------------------------------------------------------------------------
# Measurements. Every comparison is paired: the things compared run back to back on the same
# query (or batch), and ratios are medians of per-query ratios (or ratios of summed times over
# the same batches), so background load on the machine shifts both sides alike.


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds `fn()` takes, and its result. The batch memos are cleared first, so a batch
    timed twice is computed twice (`haps_core.memo`: no tokens carried over)."""
    clear_all()
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def features_with(enc: Any, texts: list[str], use_structural: bool) -> torch.Tensor:
    """The router's input features of `texts` through `enc` (what `featurize` does)."""
    emb = enc.encode(texts).float()
    if use_structural:
        emb = torch.cat([emb, torch.as_tensor(structural_features(texts))], dim=1)
    return emb


def route_with(router: HAPSRouter, enc: Any, texts: list[str], weight: float) -> list[Any]:
    """What `route()` does, through another encoder (an optimised copy of the router's)."""
    feats = features_with(enc, texts, router.config.use_structural)
    quality, cost = router.predict_features(feats, text_counts(texts))
    return router.decide(quality, cost, weight)


@torch.no_grad()
def unfused_heads(router: HAPSRouter, feats: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The plain ensemble forward pass (members one by one) that the fused path replaces."""
    q, c = router(feats)
    return torch.sigmoid(q).numpy(), torch.exp(c).numpy()


def pipelines(
    router: HAPSRouter, enc: HFEncoder, fast_encoders: dict[str, Any], weight: float
) -> dict[str, Callable[[list[str]], Any]]:
    """The end-to-end routing paths compared, by name."""
    out: dict[str, Callable[[list[str]], Any]] = {
        "route()": lambda b: router.route(b, cost_weight=weight),
    }
    for name, variant in fast_encoders.items():
        out[f"route() {name} encoder"] = lambda b, v=variant: route_with(router, v, b, weight)
    out["encoder alone"] = lambda b: enc.encode(b, batch_size=64)
    return out


def single_query(
    router: HAPSRouter,
    enc: HFEncoder,
    paths: dict[str, Callable[[list[str]], Any]],
    texts: list[str],
    weight: float,
) -> dict[str, Any]:
    """Per-query timings of every part and every path, back to back."""
    parts: dict[str, list[float]] = {
        k: [] for k in ("tokenize", "floor", "encode", "heads", "unfused", "decide", *paths)
    }
    for text in texts[:5]:  # warm-up: allocator, lazy init
        for fn in paths.values():
            fn([text])
    for text in texts:
        t, tok = timed(lambda text=text: enc.tokenize([text]))
        parts["tokenize"].append(t)
        with torch.inference_mode():
            t, _ = timed(lambda tok=tok: enc.forward_features(tok["input_ids"], tok["attention_mask"]))
        parts["floor"].append(t)
        t, feats = timed(lambda text=text: router.featurize([text]))
        parts["encode"].append(t)
        t, (q, c) = timed(lambda feats=feats, text=text: router.predict_features(feats, text_counts([text])))
        parts["heads"].append(t)
        t, _ = timed(lambda feats=feats: unfused_heads(router, feats))
        parts["unfused"].append(t)
        t, _ = timed(lambda q=q, c=c: router.decide(q, c, weight))
        parts["decide"].append(t)
        for name, fn in paths.items():
            t, _ = timed(lambda fn=fn, text=text: fn([text]))
            parts[name].append(t)
    floor = np.asarray(parts["floor"])
    ratio = {k: float(np.median(np.asarray(v) / floor)) for k, v in parts.items()}
    ratio["overhead"] = float(np.median((np.asarray(parts["heads"]) + np.asarray(parts["decide"])) / floor))
    ratio["overhead_unfused"] = float(
        np.median((np.asarray(parts["unfused"]) + np.asarray(parts["decide"])) / floor)
    )
    return {"parts": parts, "ratio": ratio}


def batched(
    paths: dict[str, Callable[[list[str]], Any]], texts: list[str], n: int
) -> dict[int, dict[str, float]]:
    """Queries per second of every path at each batch size, the paths alternating per batch."""
    out = {}
    for bs in BATCH_SIZES:
        sample = texts[: min(48, n) if bs == 1 else n]
        for fn in paths.values():  # warm-up batch
            fn(sample[:bs])
        total = dict.fromkeys(paths, 0.0)
        for s in range(0, len(sample), bs):
            chunk = sample[s : s + bs]
            for name, fn in paths.items():
                total[name] += timed(lambda fn=fn, chunk=chunk: fn(chunk))[0]
        out[bs] = {name: len(sample) / t for name, t in total.items()}
    return out


def agreement(
    router: HAPSRouter, ref: torch.Tensor, other: torch.Tensor, weights: np.ndarray, counts: np.ndarray
) -> tuple[float, float]:
    """(min, mean) over cost weights of the share of identical chosen actions."""
    q0, c0 = router.predict_features(ref, counts)
    q1, c1 = router.predict_features(other, counts)
    shares = []
    for w in weights:
        a = np.argmax(q0 - w * c0, axis=1)
        b = np.argmax(q1 - w * c1, axis=1)
        shares.append(float((a == b).mean()))
    return min(shares), float(np.mean(shares))


def encoder_variants(enc: HFEncoder, compile_too: bool) -> tuple[dict[str, Any], dict[str, float]]:
    """The optimised encoders by name (fp32 first), and the seconds each took to build."""
    out: dict[str, Any] = {"fp32": enc}
    build: dict[str, float] = {"fp32": 0.0}
    specs: list[tuple[str, dict[str, Any]]] = []
    if bf16_supported():
        specs.append(("bf16", {"precision": "bf16"}))
    specs.append(("int8", {"precision": "int8"}))
    if compile_too:
        specs.append(("compile", {"precision": "fp32", "compile": True}))
    for name, kwargs in specs:
        t, variant = timed(lambda kwargs=kwargs: optimize_encoder(enc, **kwargs))
        if kwargs.get("compile"):  # compilation happens on the first calls: count it as building
            t += timed(
                lambda variant=variant: variant.encode(["warm-up query", "a second, longer warm-up query"])
            )[0]
        out[name], build[name] = variant, t
    return out, build


def variant_rows(
    router: HAPSRouter,
    variants: dict[str, Any],
    build: dict[str, float],
    texts: dict[str, list[str]],
    n_latency: int,
    n_agree: int,
    weights: np.ndarray,
) -> list[tuple[str, dict[str, str]]]:
    """Per encoder variant: forward latency and throughput (paired with fp32), cosine, agreement."""
    use_s, d = router.config.use_structural, router.config.embed_dim
    cells: dict[str, dict[str, str]] = {name: {} for name in variants}
    for wl, items in texts.items():
        lat: dict[str, list[float]] = {name: [] for name in variants}
        with torch.inference_mode():
            for text in items[:n_latency]:
                tok = variants["fp32"].tokenize([text])
                for name, v in variants.items():
                    lat[name].append(
                        timed(
                            lambda v=v, tok=tok: v.forward_features(tok["input_ids"], tok["attention_mask"])
                        )[0]
                    )
        total = dict.fromkeys(variants, 0.0)
        sample = items[:256]
        for s in range(0, len(sample), 64):
            for name, v in variants.items():
                chunk = sample[s : s + 64]
                total[name] += timed(lambda v=v, chunk=chunk: v.encode(chunk, batch_size=64))[0]
        feats = {name: features_with(v, items[:n_agree], use_s) for name, v in variants.items()}
        base_lat = np.asarray(lat["fp32"])
        for name in variants:
            cos = (feats[name][:, :d] * feats["fp32"][:, :d]).sum(1)
            lo, mean = agreement(router, feats["fp32"], feats[name], weights, text_counts(items[:n_agree]))
            p50 = pct(lat[name], 50)
            speed = float(np.median(base_lat / np.asarray(lat[name])))
            cells[name][wl] = (
                f"fwd p50 {p50 * 1e3:.1f} ms ({speed:.2f}x faster); "
                f"{len(sample) / total[name]:.0f} q/s @64 ({total['fp32'] / total[name]:.2f}x); "
                f"cos {float(cos.mean()):.4f} (min {float(cos.min()):.3f}); agree {mean:.1%} (min {lo:.1%})"
                + (f"; build+compile {build[name]:.0f} s" if name == "compile" else "")
            )
    labels = {
        "fp32": "float32 (reference)",
        "bf16": "bf16 weights",
        "int8": "int8 dynamic, per-channel",
        "compile": "torch.compile(dynamic=True), fp32",
    }
    return [(f"encoder: {labels[name]}", cells[name]) for name in variants]


def cache_row(
    router: HAPSRouter, enc: HFEncoder, texts: dict[str, list[str]], weight: float, n: int
) -> dict[str, str]:
    """Route through an on-disk embedding cache: the second sight of a query skips the encoder."""
    cells = {}
    with tempfile.TemporaryDirectory() as tmp:
        cached = CachedEncoder(enc, tmp)
        router.attach_encoder(cached)
        try:
            for wl, items in texts.items():
                sample = items[:n]
                miss = [timed(lambda t=t: router.route([t], cost_weight=weight))[0] for t in sample]
                hit = [timed(lambda t=t: router.route([t], cost_weight=weight))[0] for t in sample]
                cells[wl] = (
                    f"miss p50 {pct(miss, 50) * 1e3:.1f} ms; hit {ms3(hit)} ms; agree 100% (same vectors)"
                )
        finally:
            router.attach_encoder(enc)
    return cells


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--router", default=None, help="checkpoint folder (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--routing-threads",
        type=int,
        default=None,
        help="torch threads route() uses (default: the router's; 0: torch's)",
    )
    parser.add_argument(
        "--heads-runtime",
        default="auto",
        choices=HEADS_RUNTIMES,
        help="the router heads' runtime (haps_core.model.compiled; default auto: ONNX Runtime once warm)",
    )
    parser.add_argument("--n-latency", type=int, default=150, help="queries timed one by one")
    parser.add_argument("--n-agree", type=int, default=500, help="queries for decision agreement")
    parser.add_argument("--n-batched", type=int, default=256, help="queries per throughput run")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    parser.add_argument("--floors-only", action="store_true", help="only issue 18's floors table")
    parser.add_argument("--json", default=None, help="also write the raw figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    router, origin = load_or_train_router(args.router)
    router.eval()
    if args.routing_threads is not None:
        router.routing_threads = args.routing_threads or None
    router.heads_runtime = args.heads_runtime
    from haps_core.paths import default_router_dir

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    texts = workloads(max(args.n_agree, args.n_batched))
    weight0 = float(router.default_cost_weight)
    folder = Path(args.router) if args.router else default_router_dir()
    floor_rows = floors(router, folder, texts, weight0)
    print(
        f"\nissue 18 floors: router {origin}, encoder {getattr(router.encoder, 'encoder_id', None)}; "
        f"route() on {router.routing_threads or torch.get_num_threads()} torch threads, "
        f"heads on {heads_runtime_used(router)}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| floor | measured | target | met |\n|---|---|---|---|")
    for what, value, target, met in floor_rows:
        print(f"| {what} | {value} | {target} | {'-' if met is None else 'yes' if met else 'NO'} |")
    if args.floors_only or not isinstance(
        router.encoder.encoder if isinstance(router.encoder, CachedEncoder) else router.encoder, HFEncoder
    ):
        print("\n(the detailed table below needs a transformer encoder: skipped)", file=sys.stderr)
        return
    enc = base_encoder(router)
    router.attach_encoder(enc)
    rss_loaded = peak_rss_mb()
    _, probe_c = router.reference_predictions()
    weights = cost_weight_grid(probe_c.mean(axis=0), n=6)
    weight = float(weights[3])
    tokens = {
        wl: [
            len(ids)
            for ids in enc.tokenizer(t[: args.n_latency], truncation=True, max_length=enc.max_length)[
                "input_ids"
            ]
        ]
        for wl, t in texts.items()
    }

    variants, build = encoder_variants(enc, not args.no_compile)
    fast_encoders = {k: v for k, v in variants.items() if k in ("bf16", "int8")}
    paths = pipelines(router, enc, fast_encoders, weight)
    single = {wl: single_query(router, enc, paths, t[: args.n_latency], weight) for wl, t in texts.items()}
    rss_single = peak_rss_mb()
    batch = {wl: batched(paths, t, args.n_batched) for wl, t in texts.items()}
    rss_batched = peak_rss_mb()
    variant_table = variant_rows(
        router, variants, build, texts, min(args.n_latency, 60), args.n_agree, weights
    )
    fused_agree = {}
    for wl, t in texts.items():
        f = features_with(enc, t[:64], router.config.use_structural)
        q0, c0 = unfused_heads(router, f)
        q1, c1 = router.predict_features(f, text_counts(t[:64]))
        c1 = c1 - router.input_cost(text_counts(t[:64]))  # the unfused heads give the output side
        fused_agree[wl] = (float(np.abs(q0 - q1).max()), float(np.abs(c0 - c1).max() / max(c0.max(), 1e-12)))
    cache = cache_row(router, enc, texts, weight, min(args.n_latency, 60))
    load1 = os.getloadavg()[0]

    rows: list[tuple[str, dict[str, str], str]] = []

    def add(what: str, fn: Callable[[str], str], target: str = "") -> None:
        rows.append((what, {wl: fn(wl) for wl in texts}, target))

    add(
        "query tokens p50 / p95 (after truncation)",
        lambda wl: f"{pct(tokens[wl], 50):.0f} / {pct(tokens[wl], 95):.0f}",
    )
    add("encoder forward = FLOOR, ms p50/p95/p99", lambda wl: ms3(single[wl]["parts"]["floor"]))
    add(
        "tokenize, ms p50/p95/p99",
        lambda wl: f"{ms3(single[wl]['parts']['tokenize'])} ({single[wl]['ratio']['tokenize']:.1%} of floor)",
    )
    add(
        "encode (featurize: tokenize+forward+structural), ms",
        lambda wl: f"{ms3(single[wl]['parts']['encode'])} ({single[wl]['ratio']['encode']:.2f}x floor)",
    )
    add(
        "router heads (predict_features, fused), ms",
        lambda wl: f"{ms3(single[wl]['parts']['heads'])} ({single[wl]['ratio']['heads']:.1%} of floor)",
    )
    add(
        "router heads unfused (plain forward, for comparison), ms",
        lambda wl: f"{ms3(single[wl]['parts']['unfused'])} ({single[wl]['ratio']['unfused']:.1%} of floor)",
    )
    add(
        "decision (decide), ms",
        lambda wl: f"{ms3(single[wl]['parts']['decide'])} ({single[wl]['ratio']['decide']:.1%} of floor)",
    )
    add(
        "heads + decision / floor, batch 1 (median per query)",
        lambda wl: (
            f"{single[wl]['ratio']['overhead']:.1%} (with the unfused heads: "
            f"{single[wl]['ratio']['overhead_unfused']:.1%})"
        ),
        f"<= {TARGET_OVERHEAD:.0%}",
    )
    for name in paths:
        if name == "encoder alone":
            continue
        label = "route() end to end" if name == "route()" else name
        add(
            f"{label}, ms p50/p95/p99",
            lambda wl, name=name: (
                f"{ms3(single[wl]['parts'][name])} ({single[wl]['ratio'][name]:.2f}x floor)"
            ),
            f"p50 <= {TARGET_P50_MS:.0f} ms",
        )
    for bs in BATCH_SIZES:
        add(
            f"batched, batch {bs}, queries/s: " + " / ".join(paths),
            lambda wl, bs=bs: (
                " / ".join(f"{batch[wl][bs][name]:.0f}" for name in paths) + f" (route() / encoder time "
                f"{batch[wl][bs]['encoder alone'] / batch[wl][bs]['route()']:.2f}x)"
            ),
            f">= {TARGET_QPS:.0f} q/s" if bs >= 64 else "",
        )
    for name, cells in variant_table:
        rows.append((name, cells, ""))
    rows.append(("embedding cache (CachedEncoder), route() single query", cache, ""))
    rows.append(
        (
            "fused vs unfused heads: max |dquality| / max rel. dcost (64 queries)",
            {wl: f"{fused_agree[wl][0]:.1e} / {fused_agree[wl][1]:.1e}" for wl in texts},
            "",
        )
    )
    rows.append(
        (
            "peak RSS, MB (router loaded / after single / after batch 256)",
            dict.fromkeys(texts, f"{rss_loaded:.0f} / {rss_single:.0f} / {rss_batched:.0f}"),
            "",
        )
    )

    print(
        f"\nrouting benchmark: router {origin}; {len(router.space)} actions, "
        f"{len(router.space.backends)} backends, "
        f"{len(router.members)} members; encoder {enc.encoder_id} (max_length {enc.max_length}); "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
        f"load average {load0:.1f} -> {load1:.1f}; cost weight for timings {weight:.3g}; "
        f"agreement over {args.n_agree} queries x cost weights {np.array2string(weights, precision=3)}\n"
    )
    print(
        f"| measure | short ({len(texts['short'])} queries) "
        f"| haps-bench ({len(texts['bench'])} queries) | target |"
    )
    print("|---|---|---|---|")
    for what, cells, target in rows:
        print(f"| {what} | {cells['short']} | {cells['bench']} | {target} |")
    if args.json:
        raw = {
            "origin": origin,
            "threads": torch.get_num_threads(),
            "load": [load0, load1],
            "single": {
                wl: {k: [float(x) for x in v] for k, v in s["parts"].items()} for wl, s in single.items()
            },
            "ratios": {wl: s["ratio"] for wl, s in single.items()},
            "batched": {wl: {str(k): v for k, v in b.items()} for wl, b in batch.items()},
            "rows": [{"what": w, **c, "target": t} for w, c, t in rows],
        }
        Path(args.json).write_text(json.dumps(raw, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
