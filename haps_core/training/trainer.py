"""The trainer: each ensemble member on its own early-stopping split, seeded and deterministic.

On CUDA it uses bf16 autocast and pinned host memory for the per-batch outcomes. Under torchrun
(`haps_core.training.distributed`) each rank trains on its slice of every global batch,
gradients are averaged across ranks, and early stopping follows rank 0.
"""

import copy
import dataclasses
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

import numpy as np
import torch
from torch.nn.utils import clip_grad_norm_

from haps_core.catalog import RoutingSpace
from haps_core.encoders import QueryEncoder, resolve_device
from haps_core.features import style_text
from haps_core.logs import OutcomeTable, split_queries
from haps_core.model import HAPSRouter, RouterConfig
from haps_core.training import distributed as ddp
from haps_core.training.batches import _batch_tensors, _seed_everything, _to_device
from haps_core.training.config import TrainingConfig, TrainingResult
from haps_core.training.losses import _cost_weight_range, _supervised_loss, dev_loss, dev_regret, policy_loss
from haps_core.training.providers import FeatureProvider, FrozenFeatures
from haps_core.training.warmup import SKIP_L2_SPLITS, _warm_up_skip, init_biases

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, dict[str, float]], None]


class _MemberResult(TypedDict):
    epochs_run: int
    best_epoch: int
    best_regret: float
    skip_l2: float | None
    history: list[dict[str, float]]


def fit_normalisation(router: HAPSRouter, features: torch.Tensor) -> None:
    """Sets the router's input standardisation from training features.

    Embeddings are already on a common scale (unit norm), so only the extra (structural)
    features are standardised and the embedding geometry is kept.
    """
    mean = features.mean(0)
    std = features.std(0) if len(features) > 1 else torch.ones_like(mean)
    # A feature (nearly) constant in training, e.g. the share of Cyrillic letters in an English
    # log, keeps its raw scale: dividing by a tiny spread would put any query that has it
    # thousands of standard deviations out. Its weights never trained anyway.
    std = torch.where(std < 1e-3, torch.ones_like(std), std)
    d = router.config.embed_dim
    mean[:d] = 0.0
    std[:d] = 1.0
    router.feature_mean.copy_(mean)
    router.feature_std.copy_(std)


def _train_member(
    router: HAPSRouter,
    member: int,
    features: torch.Tensor,
    table: OutcomeTable,
    fit_q: np.ndarray,
    stop_q: np.ndarray,
    weights: np.ndarray,
    config: TrainingConfig,
    device: torch.device,
    progress: Progress,
    provider: FeatureProvider | None = None,
    warm: bool = False,
) -> _MemberResult:
    seed = config.seed + 1000 * member
    rank, world = ddp.get_rank(), ddp.get_world_size()
    # Dropout and policy samples differ between ranks (they see different queries); the
    # shuffle generator `gen` is the same everywhere, so all ranks agree on the global batches.
    torch.manual_seed(seed + 100_003 * rank)
    net = router.members[member]
    provider = provider or FrozenFeatures(features)
    skip_l2 = None
    if config.skip_warmup_steps:
        skip_l2 = _warm_up_skip(router, member, provider, table, fit_q, config, device, stop_q)
    elif not warm:
        init_biases(router, member, table, fit_q, device)
    groups: list[dict[str, Any]] = [{"params": list(net.parameters()), "lr": config.lr}]
    groups += provider.param_groups()
    params = [p for g in groups for p in g["params"]]
    ddp.broadcast_parameters(params)  # every rank starts from rank 0's weights
    opt = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    sample_gen = torch.Generator(device=device).manual_seed(seed + 100_003 * rank)
    positive = weights[weights > 0]
    log_lo, log_hi = (math.log(positive.min()), math.log(positive.max())) if positive.size else (0.0, 0.0)
    amp = device.type == "cuda"
    best_state, best_score, best_epoch, best_regret = None, math.inf, 0, math.nan
    history: list[dict[str, float]] = []
    epochs_run = 0
    if skip_l2 is not None or warm:
        # The first candidate: the warmed-up linear path alone (the deep heads start at zero),
        # or a warm start's weights as they came.
        x_stop = provider.features(stop_q, grad=False)
        regret = dev_regret(router, x_stop, table, stop_q, weights, member)
        held = dev_loss(router, x_stop, table, stop_q, config.cost_loss_weight, member)
        if world > 1:
            regret, held = ddp.broadcast_value([regret, held])
        best_score = held if config.stop_on == "loss" else regret
        best_state, best_regret = copy.deepcopy(net.state_dict()), regret
        provider.snapshot()
    for epoch in range(config.epochs):
        epochs_run = epoch + 1
        router.train()
        order = fit_q[torch.randperm(len(fit_q), generator=gen).numpy()]
        sums = {"supervised": 0.0, "policy": 0.0, "n": 0}
        for s in range(0, len(order), config.batch_size):
            global_batch = order[s : s + config.batch_size]
            batch = ddp.shard_batch(global_batch, rank, world)
            # Drawn before any rank-dependent work, so `gen` stays in step on every rank.
            lam = 0.0
            if (
                config.policy_weight > 0
                and positive.size
                and float(torch.rand((), generator=gen)) >= config.zero_lambda_prob
            ):
                lam = math.exp(log_lo + (log_hi - log_lo) * float(torch.rand((), generator=gen)))
            opt.zero_grad(set_to_none=True)
            if len(batch) == 0:  # a last global batch smaller than the world: nothing here
                ddp.all_reduce_gradients(params)
                clip_grad_norm_(params, 5.0)
                opt.step()
                continue
            score, cost, mask = _batch_tensors(table, batch, device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                q_logit, log_c = router(provider.features(batch, grad=True), member=member)
            q_logit, log_c = q_logit.float(), log_c.float()
            loss_sup = _supervised_loss(
                q_logit, log_c, score, cost, mask, table.has_cost, config.cost_loss_weight
            )
            loss = loss_sup
            loss_pol = torch.zeros((), device=device)
            if config.policy_weight > 0:
                pred_cost = torch.exp(log_c) if table.has_cost else torch.zeros_like(log_c)
                if table.input_cost is not None:  # the head predicts the output side only
                    known = _to_device(table.dense_input_cost(batch), torch.float32, device)
                    pred_cost, cost = pred_cost + known, cost + known
                utility = torch.sigmoid(q_logit) - lam * pred_cost
                loss_pol, entropy = policy_loss(
                    utility,
                    score - lam * cost,
                    mask,
                    router.config.tau,
                    config.reinforce_samples,
                    sample_gen,
                    propensity=None
                    if table.propensity is None
                    else _to_device(table.dense_propensity(batch), torch.float32, device),
                    clip=config.propensity_clip,
                )
                loss = loss + config.policy_weight * loss_pol - config.entropy_weight * entropy
            if world > 1:  # averaged over ranks below: weight this slice by its share
                loss = loss * ddp.gradient_scale(len(batch), len(global_batch), world)
            loss.backward()
            ddp.all_reduce_gradients(params)
            clip_grad_norm_(params, 5.0)
            opt.step()
            sums["supervised"] += float(loss_sup.detach()) * len(batch)
            sums["policy"] += float(loss_pol.detach()) * len(batch)
            sums["n"] += len(batch)
        if world > 1:
            sums["supervised"], sums["policy"], sums["n"] = ddp.all_reduce_sum(
                [sums["supervised"], sums["policy"], sums["n"]]
            )
        x_stop = provider.features(stop_q, grad=False)
        regret = dev_regret(router, x_stop, table, stop_q, weights, member)
        held = dev_loss(router, x_stop, table, stop_q, config.cost_loss_weight, member)
        if world > 1:  # rank 0 decides: every rank stops at the same epoch
            regret, held = ddp.broadcast_value([regret, held])
        score_dev = held if config.stop_on == "loss" else regret
        history.append(
            {
                "member": member,
                "epoch": epoch + 1,
                "supervised": sums["supervised"] / max(sums["n"], 1),
                "policy": sums["policy"] / max(sums["n"], 1),
                "dev_loss": held,
                "dev_regret": regret,
            }
        )
        progress(member, epoch, history[-1])
        if score_dev < best_score - 1e-6:
            best_score, best_epoch, best_regret = score_dev, epoch + 1, regret
            best_state = copy.deepcopy(net.state_dict())
            provider.snapshot()
        elif epoch + 1 - best_epoch >= config.patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
        provider.restore()
    return {
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "best_regret": best_regret,
        "skip_l2": skip_l2,
        "history": history,
    }


def train_router(
    router: HAPSRouter,
    features: torch.Tensor,
    table: OutcomeTable,
    train_queries: Sequence[int] | np.ndarray,
    config: TrainingConfig | None = None,
    provider: FeatureProvider | None = None,
    warm: bool = False,
) -> TrainingResult:
    """Trains `router` in place on the observed outcomes of `train_queries`.

    Each ensemble member is trained on its own deterministic split of the training queries
    (a different part held out for early stopping), so together they use every query.

    Objective per batch of queries:

    - supervised: binary cross-entropy of the predicted quality against every observed score
      (soft targets in [0, 1]) and squared error of the predicted log-cost against every
      observed cost, both masked where a (query, action) cell is unobserved;
    - policy: a cost weight lambda is sampled per batch (log-uniform over the range that
      matters for the catalog's costs, sometimes 0), rewards are ``score - lambda * cost``, and
      the policy pi = softmax(U / tau) over the hierarchical choice is trained to maximise the
      expected reward: exactly (a sum over actions) when a query's outcome row is fully
      observed, and with REINFORCE with a baseline (samples from the policy restricted to the
      observed actions, baseline = the policy's expected reward over them) when only some are;
    - regularisers: an entropy bonus on the policy (keeps it from collapsing onto one backend
      early) and AdamW weight decay.

    Early stopping watches the decision quality on a held-out part of the training queries: by
    default their supervised loss, or (``stop_on="regret"``) the realised reward of the
    router's choice among each query's observed actions, averaged over a grid of cost weights.

    Args:
        router: a freshly built router (its space must be the table's space).
        features: [n_queries, input_dim] features of ALL the table's queries (row = query index).
        table: the sparse outcome table.
        train_queries: query indices to learn from.
        config: training settings.
        provider: where batches get their features; default: rows of `features` (frozen
            encoder). `FineTunedEncoderFeatures` trains the encoder end to end.
        warm: `router` is trained already (`haps_core.training.warmstart`): its input
            standardisation is kept and its weights are each member's first early-stopping candidate.
    """
    config = config or TrainingConfig()
    if router.space != table.space:
        msg = "the router's routing space differs from the outcome table's"
        raise ValueError(msg)
    start = time.perf_counter()
    _seed_everything(config.seed)
    device = resolve_device(config.device)
    if device.type == "cuda" and ddp.is_distributed():
        device = torch.device("cuda", torch.cuda.current_device())  # this rank's GPU
    queries = np.asarray(train_queries, dtype=np.int64)
    queries = queries[np.diff(table.indptr)[queries] > 0]
    if len(queries) < 2:
        msg = f"need at least 2 training queries with observed outcomes, got {len(queries)}"
        raise ValueError(msg)
    features = torch.as_tensor(features, dtype=torch.float32)
    if not warm:
        fit_normalisation(router, features[queries])
    router.has_cost = table.has_cost
    router.to(device)
    features_dev = features.to(device)
    weights = _cost_weight_range(table)
    n_members = len(router.members)
    show = config.progress and sys.stderr.isatty() and ddp.is_main_process()

    def progress(member: int, epoch: int, row: dict[str, float]) -> None:
        if show:
            sys.stderr.write(
                f"\rtraining member {member + 1}/{n_members} epoch {epoch + 1}/{config.epochs} "
                f"loss {row['supervised']:.4f} held-out regret {row['dev_regret']:.4f}   "
            )

    ids = [table.query_ids[i] for i in queries]
    splits = []
    for member in range(n_members):
        held = split_queries(ids, config.early_stopping_fraction, seed=config.seed + 7 + member)
        if held.all() or not held.any():
            held = np.zeros(len(queries), dtype=bool)
            held[-max(1, len(queries) // 7) :] = True
        splits.append((queries[~held], queries[held]))
    member_config = config
    if config.skip_l2 is None and config.skip_warmup_steps:
        # One L2 for every member's linear path, chosen on several members' held-out queries
        # (each member's own choice on ~15% of the queries varied with the split).
        search = provider or FrozenFeatures(features_dev)
        total: dict[Any, float] = {}
        for member, (fit_q, stop_q) in enumerate(splits[:SKIP_L2_SPLITS]):
            losses = _warm_up_skip(router, member, search, table, fit_q, config, device, stop_q, True)
            for l2, loss in losses.items():
                total[l2] = total.get(l2, 0.0) + loss
        if total:
            chosen = min(total, key=total.__getitem__)
            logger.info("linear path l2 %s (summed held-out losses %s)", chosen, total)
            if isinstance(chosen, tuple):  # the hierarchical prior: (l2, ratio of the deviations)
                member_config = dataclasses.replace(config, skip_l2=chosen[0], skip_prior_ratio=chosen[1])
            else:
                member_config = dataclasses.replace(config, skip_l2=chosen)
    members = []
    for member in range(n_members):
        fit_q, stop_q = splits[member]
        members.append(
            _train_member(
                router,
                member,
                features_dev,
                table,
                fit_q,
                stop_q,
                weights,
                member_config,
                device,
                progress,
                provider,
                warm,
            )
        )
    if show:
        sys.stderr.write("\n")
    router.eval()
    router.to("cpu")
    # A sample of training queries' features: the calibration reference for budgets.
    gen = torch.Generator().manual_seed(config.seed)
    ref_idx = queries[torch.randperm(len(queries), generator=gen).numpy()[:256]]
    router.reference_features = features[ref_idx].clone()
    if table.input_counts is not None:
        router.reference_counts = torch.as_tensor(table.input_counts[ref_idx], dtype=torch.float64)
    result = TrainingResult(
        epochs_run=sum(m["epochs_run"] for m in members),
        best_epoch=int(np.median([m["best_epoch"] for m in members])),
        best_dev_regret=float(np.nanmean([m["best_regret"] for m in members])),
        seconds=round(time.perf_counter() - start, 2),
        device=str(device),
        history=[row for m in members for row in m["history"]],
        skip_l2=members[0]["skip_l2"],
    )
    logger.info(
        "trained %d members (%d epochs in all, median best epoch %d, held-out regret %.4f) in %.1f s on %s",
        n_members,
        result.epochs_run,
        result.best_epoch,
        result.best_dev_regret,
        result.seconds,
        device,
    )
    return result


def build_router(space: RoutingSpace, router_config: RouterConfig, encoder: QueryEncoder) -> HAPSRouter:
    """A fresh router for `space`, with prompt-style embeddings computed by `encoder`."""
    styles = sorted({a.prompt_style for a in space.actions})
    style_emb = encoder.encode([style_text(space, s) for s in styles]).float()
    router = HAPSRouter(space, router_config, style_emb)
    router.attach_encoder(encoder)
    return router
