"""RouterNet: one member of the router ensemble (trunk, high-level head, PGN, low-level head).

A high-level head scores each backend from the trunk state; a parameter generation network (PGN)
generates each backend's low-level head, which scores its configurations from their values, so an
unseen temperature or prompt style still gets a sensible score. Ablations: "flat" and "no_pgn".
"""

import math
from typing import Protocol, TypeVar

import torch
from torch import nn

from haps_core.catalog import RoutingSpace
from haps_core.model.config import RouterConfig

_M = TypeVar("_M", bound=nn.Module)


def _layer(seq: nn.Sequential, index: int, kind: type[_M]) -> _M:
    """``seq[index]``, checked to be a `kind` (nn.Sequential's indexing is typed as any Module)."""
    module = seq[index]
    if not isinstance(module, kind):
        msg = f"layer {index} of the Sequential is a {type(module).__name__}, expected {kind.__name__}"
        raise TypeError(msg)
    return module


class RouterTensors(Protocol):
    """What a member reads from the router that owns it: the catalog's shared, non-learned tensors."""

    config: RouterConfig
    space: RoutingSpace
    action_values: torch.Tensor
    backend_of: torch.Tensor
    backend_prices: torch.Tensor
    style_embeddings: torch.Tensor
    style_of: torch.Tensor

    def actions_of_backend(self, b: int) -> list[int]: ...


class RouterNet(nn.Module):
    """One member of the router ensemble: trunk, high-level head, PGN and low-level head.

    Shared, non-learned tensors (action features, style embeddings, prices) live on the parent
    `HAPSRouter` and are passed in, so members hold only their own weights.
    """

    # submodules and parameters (registered in __init__, those of the architecture only)
    trunk: nn.Sequential
    skip: nn.Linear
    flat_head: nn.Linear  # "flat"
    high_head: nn.Linear  # "no_pgn" and "haps"
    low_heads: nn.ModuleList  # "no_pgn": one nn.Linear per backend
    backend_embedding: nn.Embedding  # "haps"
    style_proj: nn.Linear  # "haps"
    pgn: nn.Sequential  # "haps"
    low_base: nn.Parameter  # "haps"

    def __init__(self, parent: RouterTensors, seed_offset: int = 0) -> None:
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
            low_heads = [nn.Linear(h, 2 * len(space.actions_of(b))) for b in space.backend_names]
            for head in low_heads:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)
            self.low_heads = nn.ModuleList(low_heads)
            return
        self.backend_embedding = nn.Embedding(n_backends, config.backend_dim)
        self.style_proj = nn.Linear(config.embed_dim, config.style_dim)
        m = parent.action_values.shape[1] + config.style_dim
        k = config.pgn_hidden
        self._pgn_shapes = (m, k)
        pgn_in = nn.Linear(h + config.backend_dim + 2, h)
        pgn_out = nn.Linear(h, m * k + k + 2 * k)
        self.pgn = nn.Sequential(pgn_in, nn.GELU(), pgn_out)
        # The generated low-level head = a shared base head + the PGN's query- and
        # backend-specific modulation. The base keeps gradients flowing from the first step
        # (a purely generated head initialised near zero learns very slowly: both of its
        # layers start tiny), and the modulation starts small.
        low_base = torch.randn(m * k + k + 2 * k) / math.sqrt(m)
        low_base[m * k + k :] = 0.0  # the output layer: zero, see above
        self.low_base = nn.Parameter(low_base)
        nn.init.normal_(pgn_out.weight, std=0.02 / math.sqrt(h))
        nn.init.zeros_(pgn_out.bias)
        with torch.no_grad():
            pgn_out.weight[m * k + k :] = 0.0  # the generated output layer: zero too

    # The layers `FusedRouterHeads` stacks across members.
    @property
    def trunk_linear(self) -> nn.Linear:
        return _layer(self.trunk, 1, nn.Linear)

    @property
    def trunk_norm(self) -> nn.LayerNorm:
        return _layer(self.trunk, 3, nn.LayerNorm)

    @property
    def pgn_in(self) -> nn.Linear:
        """The PGN's first layer: it reads cat(trunk state, backend embedding, log prices)."""
        return _layer(self.pgn, 0, nn.Linear)

    @property
    def pgn_out(self) -> nn.Linear:
        """The PGN's output layer: it generates the low-level heads' weights."""
        return _layer(self.pgn, -1, nn.Linear)

    def forward(self, x: torch.Tensor, parent: RouterTensors) -> tuple[torch.Tensor, torch.Tensor]:
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
