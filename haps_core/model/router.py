"""HAPSRouter: query encoder -> shared trunk -> high-level head + parameter generation network.

Decision: predicted utility U(b, c) = quality(b, c) - lambda * cost(b, c). A backend's high-level
score is the soft maximum of its configurations, so the two levels always agree, and the call-time
choice (best backend by its best configuration, then that configuration) is the argmax of U.
Checkpoints go through `haps_core.model.checkpoint` and `haps_core.hub`.
"""

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from haps_core.catalog import RoutingSpace
from haps_core.decision import (
    RoutingDecision,
    calibrate_cost_weight,
    check_budget,
    decisions_from_predictions,
    pool_mask,
    route_from_predictions,
)
from haps_core.encoders import Precision, QueryEncoder
from haps_core.exploration import Exploration, check_exploration
from haps_core.features import action_value_features, query_features
from haps_core.model import checkpoint
from haps_core.model.arguments import check_route_budgets, route_texts
from haps_core.model.compiled import check_heads_runtime, fast_predictions
from haps_core.model.config import FEATURE_CLIP, RouterConfig
from haps_core.model.coverage import COVERAGE_PRIOR, check_coverage_prior
from haps_core.model.describe import router_repr
from haps_core.model.extend import add_backend, explore_only_mask
from haps_core.model.fused import FusedRouterHeads, fuse_heads, weights_key
from haps_core.model.guarded import guarded_route
from haps_core.model.input_cost import (
    TEXT_COUNTS,
    InputTokenModel,
    check_input_counts,
    input_model_of,
    set_input_buffers,
    text_counts,
)
from haps_core.model.net import RouterNet
from haps_core.model.ood import OODStats, register_statistics_buffers
from haps_core.model.precision import encoder_at_precision
from haps_core.model.threads import ROUTING_THREADS, check_threads, torch_threads

logger = logging.getLogger(__name__)


class HAPSRouter(nn.Module):
    """The HAPS router network and its routing API.

    Construct with `HAPSRouter.build(space, config, style_embeddings)` (training does this) or
    load with `HAPSRouter.from_pretrained(...)`. The query encoder is attached with
    `attach_encoder`; it is referenced by id in checkpoints, not copied, unless fine-tuned.
    """

    routing_threads: int | None = ROUTING_THREADS  # torch threads a route() call uses (None: torch's)
    heads_runtime: str = "auto"  # "auto", "onnxruntime" or "eager": see haps_core.model.compiled
    coverage_prior: float = COVERAGE_PRIOR  # route()'s default: see haps_core.model.coverage
    # buffers (registered in __init__)
    backend_of: torch.Tensor
    style_of: torch.Tensor
    feature_mean: torch.Tensor
    feature_std: torch.Tensor
    action_values: torch.Tensor
    style_embeddings: torch.Tensor
    backend_prices: torch.Tensor
    reference_features: torch.Tensor
    reference_counts: torch.Tensor
    input_intercept: torch.Tensor
    input_coef: torch.Tensor
    input_fitted: torch.Tensor
    ood_bank: torch.Tensor
    ood_observed: torch.Tensor
    sample_scores: torch.Tensor
    action_stats: torch.Tensor
    ood_mean: torch.Tensor
    ood_precision: torch.Tensor

    def __init__(
        self,
        space: RoutingSpace,
        config: RouterConfig,
        style_embeddings: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.space = space
        self.config = config
        self.encoder: QueryEncoder | None = None  # not a submodule: referenced by id in checkpoints
        self.encoder_info: dict[str, Any] = {}
        self.has_cost = True
        self.default_cost_weight = 0.0
        self.training_summary: dict[str, Any] = {}
        self.evaluation: dict[str, Any] = {}
        backend_of = torch.tensor(space.backend_index(), dtype=torch.long)
        styles = sorted({a.prompt_style for a in space.actions})
        style_of = torch.tensor([styles.index(a.prompt_style) for a in space.actions])
        self.styles = styles
        self.register_buffer("backend_of", backend_of, persistent=False)
        self.register_buffer("style_of", style_of, persistent=False)
        self.register_buffer("feature_mean", torch.zeros(config.input_dim))
        self.register_buffer("feature_std", torch.ones(config.input_dim))
        self.register_buffer("action_values", torch.as_tensor(action_value_features(space)))
        if style_embeddings is None:
            style_embeddings = torch.zeros(len(styles), config.embed_dim)
        self.register_buffer("style_embeddings", style_embeddings.float().clone())
        prices = [[math.log1p(b.input_price), math.log1p(b.output_price)] for b in space.backends]
        self.register_buffer("backend_prices", torch.tensor(prices, dtype=torch.float32))
        # Calibration reference: features of unlabelled queries seen in training, used to turn a
        # budget (USD per query) into a cost weight when routing a single query.
        self.register_buffer("reference_features", torch.zeros(0, config.input_dim))
        self.register_buffer("reference_counts", torch.zeros(0, len(TEXT_COUNTS), dtype=torch.float64))
        # The input side of the cost (`haps_core.model.input_cost`): none modelled until training.
        self.set_input_model(InputTokenModel.empty(space))
        # Training statistics (`haps_core.model.ood.fit_ood`): none = OOD and coverage disabled.
        register_statistics_buffers(self, config.embed_dim, len(space))
        self.ood_stats: OODStats | None = None
        self.ood_action: str | int | None = None  # default for route(ood_action=)

        self.members = nn.ModuleList(RouterNet(self, seed_offset=i) for i in range(config.members))

    def __repr__(self) -> str:
        """A short summary (catalog size, encoder, architecture, training), not a module dump."""
        return router_repr(self)

    def normalise(self, features: torch.Tensor) -> torch.Tensor:
        """Standardised features, clipped to +-FEATURE_CLIP standard deviations (an odd query
        must not drive the heads into overflow, only to the edge of their training range)."""
        x = (features - self.feature_mean) / self.feature_std
        return x.clamp(-FEATURE_CLIP, FEATURE_CLIP)

    def forward(self, features: torch.Tensor, member: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Quality logits and log-costs of every action: ([B, A], [B, A]).

        With ``member=None`` the ensemble's average (of probabilities, as a logit, and of
        log-costs); otherwise one member's own output (training trains members one by one).
        """
        x = self.normalise(features)
        if member is not None:
            return self.members[member](x, self)
        outs = [net(x, self) for net in self.members]
        if len(outs) == 1:
            return outs[0]
        prob = torch.stack([torch.sigmoid(q) for q, _ in outs]).mean(0).clamp(1e-6, 1 - 1e-6)
        log_c = torch.stack([c for _, c in outs]).mean(0)
        return torch.log(prob) - torch.log1p(-prob), log_c

    def actions_of_backend(self, b: int) -> list[int]:
        cache = self.__dict__.setdefault("_actions_cache", {})
        if b not in cache:
            cache[b] = torch.nonzero(self.backend_of == b).flatten().tolist()
        return cache[b]

    # -- prediction and routing ------------------------------------------------------------
    def attach_encoder(self, encoder: QueryEncoder) -> "HAPSRouter":
        """Sets the query encoder (a `haps_core.encoders.QueryEncoder`)."""
        if encoder.dim != self.config.embed_dim:
            msg = (
                f"encoder {encoder.encoder_id!r} gives {encoder.dim}-dim embeddings but the router "
                f"expects `embed_dim`={self.config.embed_dim}"
            )
            raise ValueError(msg)
        self.encoder = encoder
        return self

    def set_encoder_precision(self, precision: Precision = "int8", compile: bool = False) -> "HAPSRouter":
        """Swaps the attached encoder for a faster copy (`haps_core.model.precision`); returns the router."""
        self.encoder = encoder_at_precision(self.encoder, precision, compile)
        return self

    def set_input_model(self, model: InputTokenModel) -> None:
        """Sets the input-token model that prices the input side of every call exactly."""
        set_input_buffers(self, model)

    @property
    def input_model(self) -> InputTokenModel:
        """Input tokens per action from the text (all zero for backends priced wholly by the head)."""
        return input_model_of(self)

    def input_cost(self, input_counts: np.ndarray) -> np.ndarray:
        """[n, A] exact USD of each action's input tokens for texts with these `text_counts`."""
        return self.input_model.cost(self.space, input_counts)

    def featurize(self, texts: Sequence[str]) -> torch.Tensor:
        """Router input features of the query texts: embedding (+ structural features)."""
        if self.encoder is None:
            msg = "this router has no encoder attached: call attach_encoder() or from_pretrained()"
            raise RuntimeError(msg)
        return query_features(self.encoder, texts, self.config.use_structural)

    def predict_features(
        self, features: torch.Tensor | np.ndarray, input_counts: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted quality in [0, 1] and cost in USD of every action: ([n, A], [n, A]).

        Cost = the exact input cost of what is sent (from `input_counts`, the `text_counts` of
        each call's text: needed when the router models input tokens) + the predicted output
        cost. Through the fused inference heads, which have no dropout: the module's train/eval
        mode does not matter here (and is not toggled, which costs as much as the heads at batch 1).
        """
        return self.predict_with_spread(features, input_counts)[:2]

    @torch.inference_mode()
    def predict_with_spread(
        self, features: torch.Tensor | np.ndarray, input_counts: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`predict_features` and the members' spread of predicted quality [n, A], in one pass."""
        heads = self._inference_heads()
        runtime = check_heads_runtime(self.heads_runtime)  # ONNX Runtime, or numpy for a few queries
        fast = fast_predictions(heads, features, runtime, check_threads(self.routing_threads))
        quality, cost, spread = fast if fast is not None else heads.predictions(features)
        if not self.has_cost:
            return quality, np.zeros_like(quality), spread
        if self.input_model.active:
            cost = cost + self.input_cost(check_input_counts(input_counts, len(cost)))
        return quality, cost, spread

    def _inference_heads(self) -> FusedRouterHeads:
        """The heads' fused inference path (`FusedRouterHeads`): the same outputs as `forward`
        to float rounding, several times faster at small batches.

        A snapshot of the weights, rebuilt whenever `weights_key` changed (a race builds it twice: harmless).
        """
        key = weights_key(self)
        cached = self.__dict__.get("_fused_heads")
        if cached is None or cached[0] != key:
            cached = (key, fuse_heads(self))
            self.__dict__["_fused_heads"] = cached
        return cached[1]

    def predict(
        self, texts: Sequence[str], input_texts: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted quality and cost of every action for each text (`route` explains `input_texts`)."""
        return self.predict_features(self.featurize(texts), text_counts(input_texts or texts))

    def calibrate_cost_weight(
        self,
        target_mean_cost: float,
        features: torch.Tensor | np.ndarray | None = None,
        input_counts: np.ndarray | None = None,
    ) -> float:
        """The smallest cost weight whose mean predicted cost over reference queries fits a target.

        Args:
            target_mean_cost: mean USD cost per query over the reference queries.
            features: reference queries' features (unlabelled traffic); default: the fixed
                sample of training queries stored in the router.
            input_counts: the `text_counts` of those queries (with `features`).
        """
        check_budget(target_mean_cost, "target_mean_cost")
        if not self.has_cost:
            msg = "this router was trained on logs without cost: `target_mean_cost` cannot be applied"
            raise ValueError(msg)
        if features is None:
            quality, cost = self.reference_predictions()
        else:
            empty = (np.zeros((0, 0)),) * 2
            quality, cost = self.predict_features(features, input_counts) if len(features) else empty
        return calibrate_cost_weight(quality, cost, target_mean_cost)

    def decide(
        self,
        quality: np.ndarray,
        cost: np.ndarray,
        cost_weight: float,
        n_alternatives: int = 3,
    ) -> list[RoutingDecision]:
        """Decisions (with runner-ups on other backends first) from predictions."""
        return decisions_from_predictions(self.space, quality, cost, cost_weight, n_alternatives)

    def route(
        self,
        texts: Sequence[str] | str,
        cost_weight: float | None = None,
        max_cost_per_query: float | None = None,
        n_alternatives: int = 3,
        *,
        target_mean_cost: float | None = None,
        backends: Sequence[str] | None = None,
        input_texts: Sequence[str] | None = None,
        risk: float = 0.0,
        coverage_prior: float | None = None,
        ood_action: str | int | None = None,
        explain: bool = False,
        exploration: Exploration | dict[str, Any] | None = None,
    ) -> list[RoutingDecision]:
        """Routes queries: one encoder + router forward pass for the whole list.

        A query's decision never depends on the other queries of the list.

        Args:
            texts: the query texts (what the user sends; nothing else is used).
            cost_weight: lambda >= 0 (quality points per USD); default `default_cost_weight`.
            max_cost_per_query: a hard cap in USD: no chosen action (nor runner-up) is predicted
                to cost more; where none fits, the cheapest, flagged ``over_budget``.
            n_alternatives: runner-up actions kept per decision for fallback.
            target_mean_cost: instead of `cost_weight`, the mean USD cost per query to fit over
                the router's fixed reference queries (stored in the checkpoint).
            backends: route only among these backends of the catalog (default: all).
            input_texts: per query, all the text its call sends besides the style's system text
                (the history too): what its input cost is counted on; default: the query text.
            risk: decide on ``quality - risk * ensemble spread`` (a lower confidence bound; 0: mean).
            coverage_prior: how strongly a backend few nearby training queries observed is shrunk
                toward the local mean (`haps_core.model.coverage`); None: `coverage_prior`; 0: off.
            ood_action: what an out-of-distribution query gets (a backend, action key or index);
                default `self.ood_action`, else the training log's best single action.
            explain: attach an `Explanation` to each decision (``decision.explain()``).
            exploration: an `Exploration` policy (or a dict of its arguments): serve a drawn
                action now and then, its probability in ``decision.propensity``; None: greedy.
        """
        texts = route_texts(texts, input_texts)
        check_route_budgets(cost_weight, max_cost_per_query, target_mean_cost, self.has_cost)
        allowed = None if backends is None else pool_mask(self.space, backends)
        check_coverage_prior(self.coverage_prior if coverage_prior is None else coverage_prior)
        kw: dict[str, Any] = {
            "max_cost_per_query": max_cost_per_query,
            "target_mean_cost": target_mean_cost,
            "reference": self.reference_predictions() if target_mean_cost is not None else None,
            "default_cost_weight": self.default_cost_weight,
            "n_alternatives": n_alternatives,
            "exploration": check_exploration(exploration),
            "explore_only": explore_only_mask(self),
        }
        with torch_threads(check_threads(self.routing_threads)):  # see haps_core.model.threads
            if self.ood_stats is not None or risk or explain:
                return guarded_route(
                    self, texts, input_texts, cost_weight=cost_weight, pool=allowed, risk=risk,
                    coverage_prior=coverage_prior, ood_action=ood_action, explain=explain, **kw,
                )  # fmt: skip
            q, c = self.predict(texts, input_texts)
            return route_from_predictions(self.space, q, c, cost_weight=cost_weight, allowed=allowed, **kw)

    def explain(self, query: str, cost_weight: float | None = None, k: int = 5, **route_kwargs: Any) -> Any:
        """The `Explanation` of routing one query (top `k` actions); `route_kwargs` as `route`."""
        (decision,) = self.route([query], cost_weight, explain=True, **route_kwargs)
        return decision.explain(k)

    def add_backend(self, name: str, prices: tuple[float, float], grid: dict[str, Any] | None = None,
                    prior: float | None = None, min_observations: int = 50) -> "HAPSRouter":  # fmt: skip
        """A copy with backend `name` added from its (input, output) USD per 1M tokens, `grid` and
        `prior` quality (None: catalog mean); explored only until trained (`haps_core.model.extend`)."""
        return add_backend(self, name, prices, grid, prior, min_observations)  # fmt: skip

    def reference_predictions(self) -> tuple[np.ndarray, np.ndarray]:
        """Predictions on the stored reference queries (what `target_mean_cost` is a mean over)."""
        ref = self.reference_features
        if not len(ref):
            return np.zeros((0, 0)), np.zeros((0, 0))
        counts = self.reference_counts.numpy() if len(self.reference_counts) == len(ref) else None
        return self.predict_features(ref, counts)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- checkpoints (see haps_core.model.checkpoint and haps_core.hub) ----------------------
    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Writes config.json, model.safetensors and a model card README.md (atomically)."""
        return checkpoint.save_router(self, directory)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str] = "haps-default",
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        device: str = "cpu",
    ) -> "HAPSRouter":
        """Loads a router: ``"haps-default"`` (shipped), a local folder, or an "org/name" Hub repo
        at `revision` (a branch, tag or commit: pin one), with the Hub `token` and `cache_dir`;
        `local_files_only` (or HF_HUB_OFFLINE=1) never touches the network; `device` runs the encoder."""
        return checkpoint.from_pretrained(
            cls, name_or_path, revision, cache_dir, token, local_files_only, device
        )

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str], device: str = "cpu", load_encoder: bool = True,
                    local_files_only: bool = False) -> "HAPSRouter":  # fmt: skip
        """Loads a checkpoint folder strictly (`haps_core.model.checkpoint.load_router_folder`)."""
        return checkpoint.load_router_folder(cls, folder, device, load_encoder, local_files_only)

    def push_to_hub(self, repo_id: str, revision: str | None = None, private: bool | None = None,
                    commit_message: str = "Upload HAPS router", token: str | None = None) -> str:  # fmt: skip
        """Uploads the checkpoint to a Hub model repo (created if needed); returns the commit URL."""
        return checkpoint.push_router(self, repo_id, revision, private, commit_message, token)
