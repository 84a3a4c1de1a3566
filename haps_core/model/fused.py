"""FusedRouterHeads: the router ensemble's forward pass fused across members, for inference.

The members are stacked (one GEMM for every trunk and linear path), the query-independent parts
precomputed, and the low-level heads applied to every action as one GEMM per member. A snapshot of
a trained router: it matches `HAPSRouter.forward` to float32 rounding.
"""

import copy
from itertools import chain
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from haps_core.model.config import FEATURE_CLIP
from haps_core.model.net import RouterNet, RouterTensors


class FusableRouter(RouterTensors, Protocol):
    """What the fused heads snapshot: a router's members, feature scaling and catalog tensors."""

    has_cost: bool
    members: nn.ModuleList
    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __call__(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def eval(self) -> nn.Module: ...


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.detach().float() for t in tensors]).contiguous()


def _router_nets(router: FusableRouter) -> list[RouterNet]:
    """The router's members, checked to be `RouterNet`s (nn.ModuleList's items are typed as any Module)."""
    nets = []
    for member in router.members:
        if not isinstance(member, RouterNet):
            msg = f"the router's members must be RouterNet modules, got {type(member).__name__}"
            raise TypeError(msg)
        nets.append(member)
    return nets


def _deep_heads_are_zero(member: RouterNet, arch: str) -> bool:
    """Whether a member's deep heads add exactly nothing to its linear path, for any input:
    their output layers are all zero (see `RouterNet`: they start at zero, and early stopping
    may keep that state). Then the trunk, high-level head and PGN need not run."""
    if arch == "flat":
        outs = [member.flat_head.weight, member.flat_head.bias]
    elif arch == "haps":
        m, k = member._pgn_shapes
        last = member.pgn_out
        outs = [
            member.high_head.weight,
            member.high_head.bias,
            member.low_base[m * k + k :],
            last.weight[m * k + k :],
            last.bias[m * k + k :],
        ]
    else:
        return False
    return all(not bool(t.detach().any()) for t in outs)


class FusedRouterHeads(nn.Module):
    """The router ensemble's forward pass, fused across members, for inference.

    Build it from a trained router with :func:`fuse_heads` (or the constructor); it copies the
    weights, so retraining the router afterwards needs a new one. Architectures ``"haps"`` and
    ``"flat"`` are fused; ``"no_pgn"`` (an ablation) falls back to the router's own forward.

    Args:
        router: a trained `HAPSRouter` (its weights and buffers are snapshotted).
        chunk_size: queries per chunk in the low-level head, which materialises
            ``members x actions x backends x chunk x pgn_hidden`` floats; chunking bounds that
            memory for large batches without changing the result.
    """

    # buffers (registered in _build, those of the architecture only)
    feature_mean: torch.Tensor
    feature_std: torch.Tensor
    deep_idx: torch.Tensor
    w_in: torch.Tensor
    b_in: torch.Tensor
    ln_weight: torch.Tensor
    ln_bias: torch.Tensor
    w_head: torch.Tensor
    b_head: torch.Tensor
    backend_of: torch.Tensor
    w_high: torch.Tensor
    b_high: torch.Tensor
    phi: torch.Tensor
    w_z: torch.Tensor
    pgn_const: torch.Tensor
    w_gen: torch.Tensor
    b_gen: torch.Tensor
    action_slot: torch.Tensor  # and phi_pad_0, phi_pad_1, ...: one per group of backends

    def __init__(self, router: FusableRouter, chunk_size: int = 64) -> None:
        super().__init__()
        if chunk_size < 1:
            msg = f"`chunk_size` must be >= 1, got {chunk_size!r}"
            raise ValueError(msg)
        self.chunk_size = chunk_size
        self.arch = router.config.architecture
        self.has_cost = router.has_cost
        self.n_members = len(router.members)
        self._fallback: nn.Module | None = None
        with torch.no_grad():
            self._build(router)

    def _build(self, router: FusableRouter) -> None:
        members = _router_nets(router)
        n_actions = int(router.action_values.shape[0])
        self.n_actions = n_actions
        self.register_buffer("feature_mean", router.feature_mean.detach().float().clone())
        self.register_buffer("feature_std", router.feature_std.detach().float().clone())
        if self.arch == "no_pgn":
            self._fallback = copy.deepcopy(router).eval()
            return
        # Members whose deep heads output exactly zero (early stopping kept their linear path
        # alone: the output layers are still at their zero initialisation) are their linear
        # path: only the others run the trunk and the heads. Exact, and often most members.
        deep = [i for i, m in enumerate(members) if not _deep_heads_are_zero(m, self.arch)]
        self.n_deep = len(deep)
        self.register_buffer("deep_idx", torch.tensor(deep, dtype=torch.long))
        skips = [m.skip for m in members]
        members = [members[i] for i in deep]
        trunk_lin = [m.trunk_linear for m in members]
        norms = [m.trunk_norm for m in members]
        h = trunk_lin[0].out_features if members else 0
        self.hidden = h
        self.ln_eps = float(norms[0].eps) if norms else 1e-5
        # One GEMM for every member's first trunk layer and direct linear path: they all read
        # the same normalised features.
        w_in = torch.cat([*[lin.weight for lin in trunk_lin], *[k.weight for k in skips]])
        b_in = torch.cat([*[lin.bias for lin in trunk_lin], *[k.bias for k in skips]])
        self.register_buffer("w_in", w_in.detach().float().contiguous())
        self.register_buffer("b_in", b_in.detach().float().contiguous())
        if not members:
            return
        self.register_buffer("ln_weight", _stack([n.weight for n in norms])[:, None, :])  # [D, 1, h]
        self.register_buffer("ln_bias", _stack([n.bias for n in norms])[:, None, :])
        if self.arch == "flat":
            self.register_buffer("w_head", _stack([m.flat_head.weight for m in members]).transpose(1, 2))
            self.register_buffer("b_head", _stack([m.flat_head.bias for m in members])[:, None, :])
            return
        # "haps": high-level head, PGN and generated low-level heads.
        n_backends = int(router.backend_prices.shape[0])
        self.n_backends = n_backends
        self.register_buffer("backend_of", router.backend_of.detach().clone())
        self.register_buffer("w_high", _stack([m.high_head.weight for m in members]).transpose(1, 2))
        self.register_buffer("b_high", _stack([m.high_head.bias for m in members])[:, None, :])
        m_dim, k = members[0]._pgn_shapes
        self.m_dim, self.k = m_dim, k
        phis, consts, w_z, w_gen, b_gen = [], [], [], [], []
        for net in members:
            style = net.style_proj(router.style_embeddings)[router.style_of]  # [A, style_dim]
            phis.append(torch.cat([router.action_values, style], dim=1))  # [A, m]
            lin0, lin1 = net.pgn_in, net.pgn_out
            backend_in = torch.cat([net.backend_embedding.weight, router.backend_prices], dim=1)
            # pgn[0] on cat(z, backend_in) = W_z z + (W_b backend_in + b): the backend part is
            # the same for every query, so it is computed once here.
            w_z.append(lin0.weight[:, :h].T)
            consts.append(backend_in @ lin0.weight[:, h:].T + lin0.bias)  # [n_backends, h]
            w_gen.append(lin1.weight.T)  # [h, P]
            b_gen.append(lin1.bias + net.low_base)  # the shared base head folded into the bias
        self.register_buffer("phi", _stack(phis))  # [M, A, m]
        self.register_buffer("w_z", _stack(w_z))  # [M, h, h]
        self.register_buffer("pgn_const", _stack(consts)[:, None])  # [M, 1, n, h]
        self.register_buffer("w_gen", _stack(w_gen))  # [M, h, P]
        self.register_buffer("b_gen", _stack(b_gen)[:, None, :])  # [M, 1, P]
        self._build_slots()

    def _build_slots(self) -> None:
        """Actions laid out per backend: each backend's generated head is applied to its own
        actions only, in one batched product per group of backends.

        A group pads its backends' actions to its largest backend's count (zero rows), so a
        backend with many configurations (the grid of one model) would make every other one
        pay for its padding: backends are grouped, largest first, with those holding more than
        half as many actions as the group's first (padding under 2x). The PGN's per-backend
        constant is reordered to the groups' order, so each group is a contiguous slice of the
        generated heads (no gather); ``action_slot`` maps each action into the groups' padded
        layout, end to end.
        """
        n_m, n_a, m_dim, n_b = self.n_deep, self.n_actions, self.m_dim, self.n_backends
        counts = torch.bincount(self.backend_of, minlength=n_b).tolist()
        order = sorted(range(n_b), key=lambda b: (-counts[b], b))
        groups: list[list[int]] = []
        for b in order:
            if groups and 2 * counts[b] > counts[groups[-1][0]]:
                groups[-1].append(b)
            else:
                groups.append([b])
        perm = [b for g in groups for b in g]
        self.pgn_const = self.pgn_const[:, :, perm].contiguous()
        actions_of: list[list[int]] = [[] for _ in range(n_b)]
        for a, b in enumerate(self.backend_of.tolist()):
            actions_of[b].append(a)
        action_slot = torch.zeros(n_a, dtype=torch.long)
        self.slot_groups: list[tuple[int, int, int]] = []  # (first position in perm, end, slots)
        start = offset = 0
        for i, group in enumerate(groups):
            slots = max(counts[group[0]], 1)
            phi_pad = torch.zeros(n_m, len(group), slots, m_dim)
            for j, b in enumerate(group):
                idx = actions_of[b]
                phi_pad[:, j, : len(idx)] = self.phi[:, idx]
                action_slot[idx] = offset + j * slots + torch.arange(len(idx))
            self.register_buffer(f"phi_pad_{i}", phi_pad[:, None])  # [D, 1, n_g, slots, m]
            self.slot_groups.append((start, start + len(group), slots))
            start += len(group)
            offset += len(group) * slots
        self.register_buffer("action_slot", action_slot)  # [A] into the groups' padded layout

    # -- forward ----------------------------------------------------------------------------
    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Trunk state z [D, B, h] of the D members with deep heads (None if D = 0) and every
        member's direct path (quality, log-cost) [M, B, A] each."""
        n_m, n_d, h, n_a, bsz = self.n_members, self.n_deep, self.hidden, self.n_actions, x.shape[0]
        out = torch.addmm(self.b_in, x, self.w_in.T)  # [B, D*h + M*2A]
        skip = out[:, n_d * h :].reshape(bsz, n_m, 2 * n_a).transpose(0, 1)  # [M, B, 2A]
        if n_d == 0:
            return None, skip[..., :n_a], skip[..., n_a:]
        pre = out[:, : n_d * h].reshape(bsz, n_d, h).transpose(0, 1)  # [D, B, h]
        z = torch.nn.functional.layer_norm(torch.nn.functional.gelu(pre), (h,), eps=self.ln_eps)
        z = z * self.ln_weight + self.ln_bias
        return z, skip[..., :n_a], skip[..., n_a:]

    def _low_level(self, z: torch.Tensor) -> torch.Tensor:
        """Generated low-level heads' (quality, log-cost) corrections: [M, B, A, 2].

        The PGN generates each backend's head from the query's trunk state; each head is then
        applied to its own backend's actions (`_build_slots`), one batched product per group.
        """
        g = torch.nn.functional.gelu(torch.bmm(z, self.w_z)[:, :, None, :] + self.pgn_const)  # [M,B,n,h]
        n_m, bsz, n_b, h = g.shape
        m_dim, k = self.m_dim, self.k
        mk = m_dim * k
        gen = torch.baddbmm(self.b_gen, g.reshape(n_m, bsz * n_b, h), self.w_gen).reshape(n_m, bsz, n_b, -1)
        parts = []
        for i, (start, end, slots) in enumerate(self.slot_groups):
            part = gen[:, :, start:end]
            n_g = end - start
            w1 = part[..., :mk].reshape(n_m, bsz, n_g, m_dim, k)
            hid = torch.matmul(getattr(self, f"phi_pad_{i}"), w1) + part[..., None, mk : mk + k]
            w2 = part[..., mk + k :].reshape(n_m, bsz, n_g, k, 2)
            delta = torch.matmul(torch.nn.functional.gelu(hid), w2)  # [M, B, n_g, slots, 2]
            parts.append(delta.reshape(n_m, bsz, n_g * slots, 2))
        delta = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
        return delta[:, :, self.action_slot]

    def _members(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's (quality logits, log-costs): [M, B, A] each, from normalised x."""
        z, q_all, c_all = self._trunk(x)
        if z is None:  # every member is its linear path
            return q_all, c_all
        q, c = q_all[self.deep_idx], c_all[self.deep_idx]  # the members with deep heads
        if self.arch == "flat":
            out = torch.baddbmm(self.b_head, z, self.w_head)
            q, c = q + out[..., : self.n_actions], c + out[..., self.n_actions :]
            return self._merge(q_all, c_all, q, c)
        high = torch.baddbmm(self.b_high, z, self.w_high)  # [D, B, 2n]
        q = q + high[..., : self.n_backends][..., self.backend_of]
        c = c + high[..., self.n_backends :][..., self.backend_of]
        parts = [
            self._low_level(z[:, s : s + self.chunk_size]) for s in range(0, z.shape[1], self.chunk_size)
        ]
        delta = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return self._merge(q_all, c_all, q + delta[..., 0], c + delta[..., 1])

    def _merge(
        self, q_all: torch.Tensor, c_all: torch.Tensor, q: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's outputs: the deep members' (q, c) in their places, the rest as given."""
        if self.n_deep == self.n_members:
            return q, c
        q_all, c_all = q_all.clone(), c_all.clone()
        q_all[self.deep_idx], c_all[self.deep_idx] = q, c
        return q_all, c_all

    def member_outputs(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's quality logits and log-costs: [M, B, A] each (one fused pass)."""
        if self._fallback is not None:
            outs = [self._fallback(features, member=i) for i in range(self.n_members)]
            return torch.stack([q for q, _ in outs]), torch.stack([c for _, c in outs])
        x = ((features - self.feature_mean) / self.feature_std).clamp(-FEATURE_CLIP, FEATURE_CLIP)
        return self._members(x)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quality logits and log-costs [B, A] each, as `HAPSRouter.forward(features)` gives."""
        if self._fallback is not None:
            return self._fallback(features)
        return ensemble_mean(*self.member_outputs(features))

    @torch.inference_mode()
    def predictions(self, features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Quality, output cost (USD, float64) and the members' spread of quality, [B, A] each."""
        x = torch.as_tensor(features, dtype=torch.float32, device=self.feature_mean.device)
        q_members, c_members = self.member_outputs(x)
        q, c = ensemble_mean(q_members, c_members)
        quality = torch.sigmoid(q).float().cpu().numpy()
        spread = spread_of(torch.sigmoid(q_members).float()).cpu().numpy()
        return quality, torch.exp(c).double().cpu().numpy(), spread

    @torch.inference_mode()
    def predict_features(self, features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted quality in [0, 1] and cost in USD: what `HAPSRouter.predict_features` gives."""
        x = torch.as_tensor(features, dtype=torch.float32, device=self.feature_mean.device)
        q, c = self(x)
        quality = torch.sigmoid(q).float().cpu().numpy()
        cost = torch.exp(c).float().cpu().numpy() if self.has_cost else np.zeros_like(quality)
        return quality, cost


def ensemble_mean(q: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ensemble's (quality logit, log-cost) [B, A] from the members' [M, B, A]: the mean of
    probabilities as a logit, and the mean of log-costs (as `HAPSRouter.forward`)."""
    if q.shape[0] == 1:
        return q[0], c[0]
    prob = torch.sigmoid(q).mean(0).clamp(1e-6, 1 - 1e-6)
    return torch.log(prob) - torch.log1p(-prob), c.mean(0)


def spread_of(prob: torch.Tensor) -> torch.Tensor:
    """The members' population standard deviation [B, A] of their predictions [M, B, A].

    Written out: ``Tensor.std`` over the leading dimension is some 30x slower on CPU.
    """
    return (prob - prob.mean(0)).square().mean(0).sqrt()


def fuse_heads(router: FusableRouter, chunk_size: int = 64) -> FusedRouterHeads:
    """A fused, inference-only snapshot of `router`'s heads (see `FusedRouterHeads`)."""
    heads = FusedRouterHeads(router, chunk_size=chunk_size).eval()
    return heads.to(router.feature_mean.device)


def weights_key(router: nn.Module) -> tuple[Any, ...]:
    """A key that changes whenever a weight the fused heads copied may have changed.

    It holds each tensor's in-place version counter (optimiser steps, `load_state_dict` and
    `copy_` bump it), the device, and the identity of every entry of the modules'
    ``_parameters``, ``_buffers`` and ``_modules`` tables, so that re-registering one
    (`module.weight = ...`, `load_state_dict(assign=True)`, a module swapped in) changes it
    too. Tables that were empty are left out: the heads read only entries that existed when
    they were built. The modules are walked again only when some entry changed (walking
    costs more than the heads at batch 1), and the index keeps the old entries alive, so
    an id is never reused while it is compared.
    """
    index = router.__dict__.get("_weights_index")
    if index is not None:
        slots = tuple(map(id, chain.from_iterable(map(dict.values, index[0]))))
        if slots != index[1]:
            index = None
    if index is None:
        modules = tuple(router.modules())
        tables = tuple(t for m in modules for t in (m._modules, m._parameters, m._buffers) if t)
        slots = tuple(map(id, chain.from_iterable(t.values() for t in tables)))
        index = (tables, slots, (*router.parameters(), *router.buffers()), modules)
        router.__dict__["_weights_index"] = index
    return (str(router.feature_mean.device), index[1], tuple(t._version for t in index[2]))
