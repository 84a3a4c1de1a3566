"""Data-parallel training (haps_core.training.distributed): 2 gloo ranks via torchrun on 127.0.0.1.

The DDP run must give the router that single-process training gives on the same data with the
same global batch: each rank trains on half of every batch of 16 and gradients are averaged.
The outcome rows are fully observed and dropout is off, so the two are equal up to float
rounding (the per-rank masked means then weight cells exactly as the single-process mean does),
including the last batch of each epoch, whose single query leaves rank 1 with nothing.

This file is also the torchrun worker: `python -m torch.distributed.run ... test_distributed.py OUT`.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from haps_core import HAPSRouter, RouterConfig
from haps_core.catalog import Action, RoutingSpace
from haps_core.logs import OutcomeTable
from haps_core.training import TrainingConfig, train_router
from haps_core.training import distributed as ddp

ROOT = Path(__file__).resolve().parents[2]
# 94 queries: 81 fit early stopping's split, so each epoch ends on a global batch of ONE query
# and rank 1's slice of it is empty (the path where a rank contributes a zero gradient).
N_QUERIES, DIM = 94, 16


def _problem() -> tuple[HAPSRouter, torch.Tensor, OutcomeTable, np.ndarray, TrainingConfig]:
    """A tiny, fully observed routing problem with a learnable rule (no encoder)."""
    rng = np.random.default_rng(0)
    actions = [Action.make(b, temperature=t, prompt_style="cot") for b in ("a", "b", "c") for t in (0.0, 1.0)]
    space = RoutingSpace.from_actions(actions, {"a": (0.5, 1.0), "b": (2.0, 4.0), "c": (10.0, 20.0)})
    feats = rng.normal(size=(N_QUERIES, DIM)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    n_a = len(space)
    logits = feats[:, :n_a] * 3.0 + np.linspace(-0.5, 0.5, n_a)
    score = (rng.random((N_QUERIES, n_a)) < 1 / (1 + np.exp(-logits))).astype(float).ravel()
    cost = np.tile(np.geomspace(1e-4, 1e-2, n_a), N_QUERIES) * rng.uniform(0.5, 1.5, N_QUERIES * n_a)
    table = OutcomeTable(
        space=space,
        query_ids=[f"q{i}" for i in range(N_QUERIES)],
        queries=[f"query {i}" for i in range(N_QUERIES)],
        cell_query=np.repeat(np.arange(N_QUERIES), n_a),
        cell_action=np.tile(np.arange(n_a), N_QUERIES),
        score=score,
        cost=cost,
        count=np.ones(N_QUERIES * n_a, dtype=np.int64),
    )
    torch.manual_seed(0)
    config = RouterConfig(
        embed_dim=DIM, use_structural=False, hidden=16, members=1, dropout=0.0, input_dropout=0.0
    )
    router = HAPSRouter(space, config)
    router.encoder_info = {"id": "synthetic-test-encoder"}
    training = TrainingConfig(
        epochs=4, batch_size=16, patience=10, skip_warmup_steps=5, progress=False, device="cpu"
    )
    return router, torch.from_numpy(feats), table, np.arange(N_QUERIES), training


def _worker(out: Path) -> None:
    ctx = ddp.init_distributed("cpu")
    assert len(ddp.shard_batch(np.arange(1))) == (1 if ctx.rank == 0 else 0)
    assert ctx.world_size == 2 and ctx.backend == "gloo" and ddp.is_distributed()
    router, feats, table, train_idx, training = _problem()
    result = train_router(router, feats, table, train_idx, training)
    quality, cost = router.predict_features(feats)
    np.savez(
        out / f"rank{ctx.rank}.npz",
        quality=quality,
        cost=cost,
        epochs=result.epochs_run,
        loss=[row["supervised"] for row in result.history],
    )
    ddp.save_on_main(router, out / "ckpt")
    ddp.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def one_thread():
    """One torch thread, as each torchrun rank runs, restored afterwards: later tests in this
    process (the pinned default-router decisions) run at the default thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_two_rank_gloo_training_matches_single_process(tmp_path, one_thread):
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        __file__, str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=110, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in (0, 1)]
    # gradient sync: both ranks end with the same weights, bit for bit
    np.testing.assert_array_equal(ranks[0]["quality"], ranks[1]["quality"])
    np.testing.assert_array_equal(ranks[0]["cost"], ranks[1]["cost"])

    router, feats, table, train_idx, training = _problem()
    result = train_router(router, feats, table, train_idx, training)
    quality, cost = router.predict_features(feats)
    assert int(ranks[0]["epochs"]) == result.epochs_run
    np.testing.assert_allclose(ranks[0]["quality"], quality, atol=1e-4)
    np.testing.assert_allclose(np.log(ranks[0]["cost"]), np.log(cost), atol=1e-4)
    np.testing.assert_allclose(ranks[0]["loss"], [r["supervised"] for r in result.history], atol=1e-4)

    # rank 0 wrote the checkpoint, and it loads to the same predictions
    from haps_core.model import load_router_folder

    loaded = load_router_folder(tmp_path / "ckpt", load_encoder=False)
    q2, _ = loaded.predict_features(feats)
    np.testing.assert_allclose(q2, ranks[0]["quality"], atol=1e-6)


def test_sharding_is_disjoint_deterministic_and_covering():
    batch = np.arange(17)
    for world in (1, 2, 3, 5):
        parts = [ddp.shard_batch(batch, r, world) for r in range(world)]
        assert np.array_equal(np.concatenate(parts), batch)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    queries = np.arange(100, 150)
    shards = [ddp.shard_queries(queries, epoch=3, seed=7, rank=r, world_size=2) for r in (0, 1)]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(np.concatenate(shards)) == list(queries)
    again = ddp.shard_queries(queries, epoch=3, seed=7, rank=0, world_size=2)
    assert np.array_equal(shards[0], again)
    other_epoch = ddp.shard_queries(queries, epoch=4, seed=7, rank=0, world_size=2)
    assert not np.array_equal(shards[0], other_epoch)
    # slices weighted by their share average to the global mean's gradient
    assert ddp.gradient_scale(3, 5, world_size=2) == pytest.approx(1.2)
    assert ddp.gradient_scale(8, 16, world_size=2) == 1.0


def test_single_process_context_without_torchrun(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    ctx = ddp.init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.device.type) == (0, 1, True, "cpu")
    assert ddp.is_main_process() and ddp.get_world_size() == 1
    # collectives are no-ops in a single process
    assert ddp.all_reduce_sum([1.0, 2.0]) == [1.0, 2.0]
    assert ddp.broadcast_value([3.0]) == [3.0]
    with pytest.raises(ValueError, match="`device`"):
        ddp.init_distributed("tpu")


def test_nccl_and_the_local_gpu_are_picked_when_cuda_is_available(monkeypatch):
    """No GPU here: CUDA is faked to check the choices, not run on it."""
    calls = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.setdefault("device", d))
    monkeypatch.setattr(ddp.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(ddp.dist, "init_process_group", lambda **kw: calls.setdefault("init", kw))
    monkeypatch.setattr(ddp.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(ddp.dist, "get_world_size", lambda: 2)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ctx = ddp.init_distributed("auto")
    assert ctx.backend == "nccl" and ctx.device == torch.device("cuda", 1)
    assert calls["init"]["backend"] == "nccl" and calls["device"] == torch.device("cuda", 1)
    assert not ctx.is_main


def test_cuda_batches_go_through_pinned_memory(monkeypatch):
    """No GPU here: the host->device copy is intercepted to check pinning and non_blocking."""
    from haps_core.training import batches

    seen = {}

    def fake_pin(self):
        seen["pinned"] = True
        return self

    def fake_to(self, *args, **kwargs):
        seen["to"] = (args, kwargs)
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    monkeypatch.setattr(torch.Tensor, "to", fake_to)
    out = batches._to_device(np.ones((2, 3)), torch.float32, torch.device("cuda"))
    assert out.dtype == torch.float32
    assert seen["pinned"] and seen["to"] == ((torch.device("cuda"),), {"non_blocking": True})
    seen.clear()
    monkeypatch.undo()
    cpu = batches._to_device(np.ones((2, 3)), torch.float32, torch.device("cpu"))
    assert not seen and cpu.device.type == "cpu"


def test_the_old_distributed_module_warns_and_re_exports(monkeypatch):
    import importlib

    monkeypatch.delitem(sys.modules, "haps_core.distributed", raising=False)
    match = "haps_core.distributed is deprecated: import from haps_core.training.distributed"
    with pytest.warns(DeprecationWarning, match=match):
        old = importlib.import_module("haps_core.distributed")
    assert old.init_distributed is ddp.init_distributed and old.shard_batch is ddp.shard_batch
    assert old.save_on_main is ddp.save_on_main and old.DistContext is ddp.DistContext


if __name__ == "__main__":
    torch.set_num_threads(1)
    _worker(Path(sys.argv[1]))


def test_haps_train_in_two_processes(tmp_path):
    """`haps train --processes 2`: torchrun's launcher, 2 gloo ranks: one checkpoint (rank 0's),
    one report line, and the checkpoint routes. Real: torchrun, gloo, the CLI, a tiny BERT."""
    from haps_core.model import load_router_folder
    from tests.helpers.logs import synthetic_rows, write_jsonl
    from tests.helpers.tiny_models import make_tiny_bert

    enc = make_tiny_bert(tmp_path / "enc")
    logs = write_jsonl(tmp_path / "logs.jsonl", synthetic_rows(60))
    out = tmp_path / "router"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable, "-m", "haps_core.cli", "train", "--processes", "2",
        "--logs", str(logs), "--encoder", str(enc),
        "--output", str(out), "--epochs", "2", "--members", "1", "--device", "cpu", "--no-cache",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=110, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reports = [line for line in proc.stdout.splitlines() if line.startswith("trained a haps router")]
    assert len(reports) == 1 and "x 2 processes" in reports[0], proc.stdout
    router = load_router_folder(out)
    (d,) = router.route(["Who wrote Hamlet? #1"], cost_weight=0.0)
    assert d.backend in ("small", "large")
