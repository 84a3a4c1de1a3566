"""HAPSRouter: query encoder -> shared trunk -> high-level head + parameter generation network.

The two levels of the HAPS paper (arXiv 2601.05903):

1. High-level head: from the trunk state, per backend a base quality logit and a base log-cost.
2. Parameter generation network (PGN): a hypernetwork that, from the trunk state and a learned
   backend embedding (plus the backend's prices), *generates the weights* of a small low-level
   head. That head scores each of the backend's configurations from the configuration's
   features (temperature value, prompt-style text embedding, other declared parameters) as a
   correction to the backend's base quality and cost. Because configurations are described by
   their values and the head is generated from a shared network, a temperature or prompt style
   a backend never saw in training still gets a sensible score, and what one backend learns
   about settings transfers to the others.

Decision: predicted utility U(b, c) = quality(b, c) - lambda * cost(b, c). The hierarchical
policy factorises as pi(b) * pi(c | b) with pi(b) proportional to sum_c exp(U(b, c) / tau): a
backend's high-level score is the soft maximum of its configurations, so the two levels always
agree, and the call-time choice (best backend by its best configuration, then that
configuration) is the argmax of U.

Ablations built by the same class (``architecture``): ``"flat"`` (one head over all actions, no
hierarchy, no PGN) and ``"no_pgn"`` (hierarchical, independent low-level heads per backend).
"""

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
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
    route_from_predictions,
)
from haps_core.features import STRUCTURAL_FEATURES, action_value_features, query_features

logger = logging.getLogger(__name__)

ARCHITECTURES = ("haps", "flat", "no_pgn")

# Counts parameter and buffer registrations in any module of the process (torch's global
# registration hooks): HAPSRouter's inference cache re-reads its tensor list when it moved.
_REGISTRATIONS = [0]


def _count_registration(*_args: Any) -> None:
    _REGISTRATIONS[0] += 1


torch.nn.modules.module.register_module_parameter_registration_hook(_count_registration)
torch.nn.modules.module.register_module_buffer_registration_hook(_count_registration)
torch.nn.modules.module.register_module_module_registration_hook(_count_registration)
FEATURE_CLIP = 10.0  # standard deviations; see HAPSRouter.normalise


@dataclass
class RouterConfig:
    """Hyper-parameters of a router's network (saved in checkpoints' config.json).

    Args:
        embed_dim: size of the query embedding from the encoder.
        use_structural: append the structural text features to the embedding.
        hidden: trunk width.
        backend_dim: learned backend embedding size (input of the PGN).
        style_dim: projection size of the prompt-style text embedding.
        pgn_hidden: width of the generated low-level head.
        dropout: dropout in the trunk (training only).
        architecture: "haps", or an ablation: "flat" or "no_pgn".
        tau: temperature of the policy softmax over utilities (quality units).
        members: ensemble size; members differ in seed and early-stopping split, and their
            predictions are averaged (variance, not bias, dominates with few queries per action).
    """

    embed_dim: int = 384
    use_structural: bool = True
    hidden: int = 256
    backend_dim: int = 16
    style_dim: int = 16
    pgn_hidden: int = 16
    dropout: float = 0.2
    input_dropout: float = 0.1
    architecture: str = "haps"
    tau: float = 0.05
    members: int = 5
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            msg = f"`architecture` must be one of {ARCHITECTURES}, got {self.architecture!r}"
            raise ValueError(msg)
        for name in ("embed_dim", "hidden", "backend_dim", "style_dim", "pgn_hidden", "members"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                msg = f"`{name}` must be a positive integer, got {value!r}"
                raise ValueError(msg)
        if not 0.0 <= self.dropout < 1.0:
            msg = f"`dropout` must be in [0, 1), got {self.dropout!r}"
            raise ValueError(msg)
        if not self.tau > 0:
            msg = f"`tau` must be > 0, got {self.tau!r}"
            raise ValueError(msg)

    @property
    def input_dim(self) -> int:
        return self.embed_dim + (len(STRUCTURAL_FEATURES) if self.use_structural else 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RouterConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            logger.warning("ignoring unknown router config keys %s (saved by a newer HAPS?)", unknown)
        return cls(**{k: v for k, v in data.items() if k in known})


class RouterNet(nn.Module):
    """One member of the router ensemble: trunk, high-level head, PGN and low-level head.

    Shared, non-learned tensors (action features, style embeddings, prices) live on the parent
    `HAPSRouter` and are passed in, so members hold only their own weights.
    """

    def __init__(self, parent: "HAPSRouter", seed_offset: int = 0) -> None:
        super().__init__()
        config, space = parent.config, parent.space
        n_actions, n_backends = len(space), len(space.backends)
        h = config.hidden
        self.arch = config.architecture
        self.trunk = nn.Sequential(
            nn.Dropout(config.input_dropout),
            nn.Linear(config.input_dim, h),
            nn.GELU(),
            nn.LayerNorm(h),
            nn.Dropout(config.dropout),
        )
        # A direct linear path from the query features to every action's quality and log-cost
        # (what a per-action logistic regression sees), so the deep heads only have to learn
        # what it misses; with few queries per action that keeps the router from doing worse
        # than the simple model. Zero-initialised.
        self.skip = nn.Linear(config.input_dim, 2 * n_actions)
        nn.init.zeros_(self.skip.weight)
        nn.init.zeros_(self.skip.bias)
        # Every deep head's output layer starts at zero, so an untrained member predicts exactly
        # what its linear path does: early stopping can then keep the linear path alone when
        # the deep heads only add noise (the deep part has to earn its place on held-out data).
        if self.arch == "flat":
            self.flat_head = nn.Linear(h, 2 * n_actions)
            nn.init.zeros_(self.flat_head.weight)
            nn.init.zeros_(self.flat_head.bias)
            return
        self.high_head = nn.Linear(h, 2 * n_backends)
        nn.init.zeros_(self.high_head.weight)
        nn.init.zeros_(self.high_head.bias)
        if self.arch == "no_pgn":
            self.low_heads = nn.ModuleList(
                nn.Linear(h, 2 * len(space.actions_of(b))) for b in space.backend_names
            )
            for head in self.low_heads:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)
            return
        self.backend_embedding = nn.Embedding(n_backends, config.backend_dim)
        self.style_proj = nn.Linear(config.embed_dim, config.style_dim)
        m = parent.action_values.shape[1] + config.style_dim
        k = config.pgn_hidden
        self._pgn_shapes = (m, k)
        self.pgn = nn.Sequential(
            nn.Linear(h + config.backend_dim + 2, h),
            nn.GELU(),
            nn.Linear(h, m * k + k + 2 * k),
        )
        # The generated low-level head = a shared base head + the PGN's query- and
        # backend-specific modulation. The base keeps gradients flowing from the first step
        # (a purely generated head initialised near zero learns very slowly: both of its
        # layers start tiny), and the modulation starts small.
        low_base = torch.randn(m * k + k + 2 * k) / math.sqrt(m)
        low_base[m * k + k :] = 0.0  # the output layer: zero, see above
        self.low_base = nn.Parameter(low_base)
        nn.init.normal_(self.pgn[-1].weight, std=0.02 / math.sqrt(h))
        nn.init.zeros_(self.pgn[-1].bias)
        with torch.no_grad():
            self.pgn[-1].weight[m * k + k :] = 0.0  # the generated output layer: zero too

    def forward(self, x: torch.Tensor, parent: "HAPSRouter") -> tuple[torch.Tensor, torch.Tensor]:
        """(quality logits, log-costs), each [B, A], from normalised features x."""
        n_actions = parent.action_values.shape[0]
        z = self.trunk(x)
        skip = self.skip(x)
        base_q, base_c = skip[:, :n_actions], skip[:, n_actions:]
        if self.arch == "flat":
            out = self.flat_head(z)
            return base_q + out[:, :n_actions], base_c + out[:, n_actions:]
        n_backends = parent.backend_prices.shape[0]
        high = self.high_head(z)
        # index_select rather than advanced indexing throughout: its backward (index_add) is
        # deterministic on CPU, where advanced indexing's (index_put with accumulation) is not
        # with several threads, and training must be reproducible.
        q = base_q + high[:, :n_backends].index_select(1, parent.backend_of)
        c = base_c + high[:, n_backends:].index_select(1, parent.backend_of)
        deltas_q, deltas_c, idxs = [], [], []
        if self.arch == "no_pgn":
            for b, head in enumerate(self.low_heads):
                idx = parent.actions_of_backend(b)
                delta = head(z)
                deltas_q.append(delta[:, : len(idx)])
                deltas_c.append(delta[:, len(idx) :])
                idxs += idx
        else:
            # All backends at once: generate each backend's head, then gather per action.
            m, k = self._pgn_shapes
            style_feats = self.style_proj(parent.style_embeddings).index_select(0, parent.style_of)
            phi = torch.cat([parent.action_values, style_feats], dim=1)  # [A, m]
            bsz = z.shape[0]
            backend_in = torch.cat([self.backend_embedding.weight, parent.backend_prices], dim=1)
            pgn_in = torch.cat(
                [z[:, None, :].expand(-1, n_backends, -1), backend_in[None].expand(bsz, -1, -1)], dim=2
            )
            gen = self.low_base + self.pgn(pgn_in)  # [B, n_backends, m*k + k + 2k]
            # Every action through every backend's generated first layer as ONE matrix product
            # (phi [A, m] @ [m, n*B*k]), then each action keeps its own backend's slice. Only
            # 1/n of the products is used, but gathering a whole generated head per (query,
            # action) instead costs far more in memory traffic, forward and backward.
            n_actions_all, rows = phi.shape[0], torch.arange(phi.shape[0], device=x.device)
            w1 = gen[..., : m * k].reshape(bsz, n_backends, m, k).permute(2, 1, 0, 3)
            hidden = (phi @ w1.reshape(m, -1)).reshape(n_actions_all, n_backends, bsz, k)
            pick = rows * n_backends + parent.backend_of  # each action's own backend
            hidden = hidden.reshape(n_actions_all * n_backends, bsz, k).index_select(0, pick)  # [A, B, k]
            b1 = gen[..., m * k : m * k + k].permute(1, 0, 2).index_select(0, parent.backend_of)  # [A, B, k]
            hidden = torch.nn.functional.gelu(hidden + b1)
            w2 = gen[..., m * k + k :].reshape(bsz, n_backends, k, 2).permute(1, 0, 2, 3)
            w2 = w2.index_select(0, parent.backend_of)  # [A, B, k, 2]
            delta = (hidden[..., None] * w2).sum(-2).permute(1, 0, 2)  # [B, A, 2]
            return q + delta[..., 0], c + delta[..., 1]
        order = torch.argsort(torch.tensor(idxs, device=x.device))
        dq, dc = torch.cat(deltas_q, 1).index_select(1, order), torch.cat(deltas_c, 1).index_select(1, order)
        return q + dq, c + dc


class HAPSRouter(nn.Module):
    """The HAPS router network and its routing API.

    Construct with `HAPSRouter.build(space, config, style_embeddings)` (training does this) or
    load with `HAPSRouter.from_pretrained(...)`. The query encoder is attached with
    `attach_encoder`; it is referenced by id in checkpoints, not copied, unless fine-tuned.
    """

    def __init__(
        self,
        space: RoutingSpace,
        config: RouterConfig,
        style_embeddings: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.space = space
        self.config = config
        self.encoder: Any = None  # a haps_core.encoders.QueryEncoder, not a submodule
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

        self.members = nn.ModuleList(RouterNet(self, seed_offset=i) for i in range(config.members))

    # -- network ---------------------------------------------------------------------------
    def normalise(self, features: torch.Tensor) -> torch.Tensor:
        """Standardised features, clipped to +-FEATURE_CLIP standard deviations: a query unlike
        every training query (another script, a huge length) must not drive the heads into
        overflow (an infinite predicted cost), only to the edge of what they were trained on."""
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
    def attach_encoder(self, encoder: Any) -> "HAPSRouter":
        """Sets the query encoder (a `haps_core.encoders.QueryEncoder`)."""
        if encoder.dim != self.config.embed_dim:
            msg = (
                f"encoder {encoder.encoder_id!r} gives {encoder.dim}-dim embeddings but the router "
                f"expects `embed_dim`={self.config.embed_dim}"
            )
            raise ValueError(msg)
        self.encoder = encoder
        return self

    def set_encoder_precision(self, precision: str = "int8", compile: bool = False) -> "HAPSRouter":
        """Swaps the attached encoder for a faster copy of it (`haps_core.speed.optimize_encoder`).

        On a CPU the encoder's forward pass is most of a routing call's time. "int8" (dynamic
        quantisation of its Linear layers) is about 2.5x faster at batch 1 and keeps about
        95-100% of decisions identical; "bf16" (where the CPU has native bfloat16) is about
        1.5x faster with ~99.8% identical; "fp32" restores the original weights' precision.
        An embedding cache around the encoder is kept, under the new encoder's own fingerprint
        (vectors of different precisions never mix). Returns the router.
        """
        from haps_core.encoders import CachedEncoder
        from haps_core.speed import PRECISIONS, optimize_encoder

        if precision not in PRECISIONS:
            msg = f"`precision` must be one of {PRECISIONS}, got {precision!r}"
            raise ValueError(msg)
        if self.encoder is None:
            msg = "this router has no encoder attached: call attach_encoder() or from_pretrained()"
            raise RuntimeError(msg)
        cached = self.encoder if isinstance(self.encoder, CachedEncoder) else None
        base = cached.encoder if cached is not None else self.encoder
        base = getattr(base, "source", base)  # start from float32 again, whatever was set
        fast = base if precision == "fp32" and not compile else optimize_encoder(base, precision, compile)
        self.encoder = CachedEncoder(fast, cached.directory.parent) if cached is not None else fast
        return self

    def featurize(self, texts: Sequence[str]) -> torch.Tensor:
        """Router input features of the query texts: embedding (+ structural features)."""
        if self.encoder is None:
            msg = (
                "this router has no encoder attached: call attach_encoder() or load it with from_pretrained()"
            )
            raise RuntimeError(msg)
        return query_features(self.encoder, texts, self.config.use_structural)

    @torch.no_grad()
    def predict_features(self, features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted quality in [0, 1] and cost in USD of every action: ([n, A], [n, A]).

        Through the fused inference heads, which have no dropout: the module's train/eval mode
        does not matter here (and is not toggled, which costs as much as the heads at batch 1).
        """
        x = torch.as_tensor(features, dtype=torch.float32, device=self.feature_mean.device)
        q, c = self._inference_heads()(x)
        quality = torch.sigmoid(q).float().cpu().numpy()
        cost = torch.exp(c).float().cpu().numpy() if self.has_cost else np.zeros_like(quality)
        return quality, cost

    def _inference_heads(self) -> nn.Module:
        """The heads' fused inference path (`haps_core.speed.FusedRouterHeads`): the same
        outputs as `forward` to float rounding, several times faster at small batches.

        It is a snapshot of the weights, so it is rebuilt whenever one changed: the key holds
        each tensor's identity and in-place version counter (optimiser steps, `load_state_dict`
        and `copy_` bump it) and the device. The list of tensors is cached too and re-read only
        when some module (re)registered a parameter or buffer since (`module.weight = ...`,
        `load_state_dict(assign=True)`): walking the modules costs more than the heads at batch
        1. Building twice under a thread race is harmless.
        """
        from haps_core.speed import fuse_heads  # speed imports this module

        tensors = self.__dict__.get("_fused_tensors")
        if tensors is None or tensors[0] != _REGISTRATIONS[0]:
            tensors = (_REGISTRATIONS[0], (*self.parameters(), *self.buffers()))
            self.__dict__["_fused_tensors"] = tensors
        key = (str(self.feature_mean.device), *((id(t), t._version) for t in tensors[1]))
        cached = self.__dict__.get("_fused_heads")
        if cached is None or cached[0] != key:
            cached = (key, fuse_heads(self))
            self.__dict__["_fused_heads"] = cached
        return cached[1]

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted quality and cost of every action for each text."""
        return self.predict_features(self.featurize(texts))

    def calibrate_cost_weight(
        self, max_cost_per_query: float, features: torch.Tensor | np.ndarray | None = None
    ) -> float:
        """The smallest cost weight whose mean predicted cost over reference queries fits a budget.

        Args:
            max_cost_per_query: budget in USD per query (mean over the reference queries).
            features: reference queries' features (unlabelled traffic); default: the sample of
                training queries stored in the router.
        """
        check_budget(max_cost_per_query)
        if not self.has_cost:
            msg = "this router was trained on logs without cost: a budget cannot be applied"
            raise ValueError(msg)
        ref = self.reference_features if features is None else features
        quality, cost = self.predict_features(ref) if len(ref) else (np.zeros((0, 0)), np.zeros((0, 0)))
        return calibrate_cost_weight(quality, cost, max_cost_per_query)

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
    ) -> list[RoutingDecision]:
        """Routes queries: one encoder + router forward pass for the whole list.

        Args:
            texts: the query texts (what the user sends; nothing else is used).
            cost_weight: lambda >= 0 (quality points per USD); default `default_cost_weight`.
            max_cost_per_query: alternatively, a budget in USD per query, calibrated to a cost
                weight on these queries (several) or on the stored reference queries (one).
            n_alternatives: runner-up actions kept per decision for fallback.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                msg = f"`texts[{i}]` must be a string, got {type(t).__name__}"
                raise TypeError(msg)
            if not t.strip():
                msg = f"`texts[{i}]` is empty or whitespace: there is nothing to route on"
                raise ValueError(msg)
        if cost_weight is not None and max_cost_per_query is not None:
            msg = "give either `cost_weight` or `max_cost_per_query`, not both"
            raise ValueError(msg)
        features = self.featurize(texts)
        quality, cost = self.predict_features(features)
        reference = None
        if max_cost_per_query is not None:
            check_budget(max_cost_per_query)
            if not self.has_cost:
                msg = "this router was trained on logs without cost: a budget cannot be applied"
                raise ValueError(msg)
            if len(texts) == 1:  # one query: calibrate on the stored reference queries
                ref = self.reference_features
                reference = self.predict_features(ref) if len(ref) else (np.zeros((0, 0)), np.zeros((0, 0)))
        return route_from_predictions(
            self.space,
            quality,
            cost,
            cost_weight=cost_weight,
            max_cost_per_query=max_cost_per_query,
            reference=reference,
            default_cost_weight=self.default_cost_weight,
            n_alternatives=n_alternatives,
        )

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- checkpoints (see haps_core.hub) ---------------------------------------------------
    def save_pretrained(self, directory: str | Any) -> Any:
        """Writes config.json, model.safetensors and a model card README.md (atomically)."""
        from haps_core.hub import save_router

        return save_router(self, directory)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Any = "haps-default",
        revision: str | None = None,
        cache_dir: str | Any | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        device: str = "cpu",
    ) -> "HAPSRouter":
        """Loads a router: ``"haps-default"`` (shipped), a local folder, or a Hub repo id.

        Args:
            name_or_path: "haps-default", a checkpoint folder, or "org/name" on the Hub.
            revision: Hub branch, tag or commit (pin a commit for reproducibility).
            cache_dir: Hugging Face cache folder.
            token: Hub token for private repos.
            local_files_only: never touch the network (also implied by HF_HUB_OFFLINE=1).
            device: where the encoder runs ("cpu", "cuda", "auto").
        """
        from haps_core.hub import from_pretrained

        return from_pretrained(name_or_path, revision, cache_dir, token, local_files_only, device)

    def push_to_hub(
        self,
        repo_id: str,
        revision: str | None = None,
        private: bool | None = None,
        commit_message: str = "Upload HAPS router",
        token: str | None = None,
    ) -> str:
        """Uploads the checkpoint to a Hub model repo (created if needed); returns the commit URL."""
        from haps_core.hub import push_router

        return push_router(self, repo_id, revision, private, commit_message, token)
