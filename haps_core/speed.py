"""Inference speed-ups for routing: the fused router-head path (used by `HAPSRouter` itself)
and opt-in faster encoders.

Why this module exists: on a CPU the query encoder's forward pass is the floor of a routing
call, and everything else (the ensemble's heads, the decision) should add little to it. Two
things stand in the way, and each has a fix here that leaves training and checkpoints alone:

1. The router heads. `HAPSRouter.forward` runs its ensemble members one after another, and each
   member's parameter generation network (PGN) *gathers* a generated low-level head per action,
   a ``[batch, actions, m*k + 3k]`` copy that is mostly memory traffic, then applies it with
   many tiny matrix products. `FusedRouterHeads` computes the same function with the members
   stacked (one GEMM for every member's trunk and linear path), the query-independent parts
   (prompt-style projections, backend embeddings through the PGN's first layer) precomputed,
   and the low-level heads applied to every action as one GEMM per member before picking each
   action's own backend. It is a snapshot of a trained router for inference only, and matches
   `HAPSRouter.forward` to float32 rounding (tests/test_performance_paths.py), and
   `HAPSRouter.predict_features` (hence `route`) uses it, rebuilt when weights change.
2. The encoder. At batch 1 a 22M-parameter MiniLM is bound by reading its weights, so smaller
   weights are faster: bfloat16 weights (near lossless, where the CPU has native bf16) or
   dynamic int8 quantisation of the Linear layers (fastest, but it moves embeddings more; see
   benchmarks/routing.py for the decision agreement each gives). `optimize_encoder` returns a new
   encoder with its own cache fingerprint, so an embedding cache never mixes vectors of
   different precisions, and the same `encoder_id`, so checkpoints still name the model.
"""

import copy
import logging
import warnings
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from haps_core.encoders import HFEncoder
from haps_core.model import FEATURE_CLIP, HAPSRouter

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")


# ---------------------------------------------------------------------------------------------
# Router heads


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.detach().float() for t in tensors]).contiguous()


def _deep_heads_are_zero(member: nn.Module, arch: str) -> bool:
    """Whether a member's deep heads add exactly nothing to its linear path, for any input:
    their output layers are all zero (see `RouterNet`: they start at zero, and early stopping
    may keep that state). Then the trunk, high-level head and PGN need not run."""
    if arch == "flat":
        outs = [member.flat_head.weight, member.flat_head.bias]
    elif arch == "haps":
        m, k = member._pgn_shapes
        last = member.pgn[-1]
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

    def __init__(self, router: HAPSRouter, chunk_size: int = 64) -> None:
        super().__init__()
        if chunk_size < 1:
            msg = f"`chunk_size` must be >= 1, got {chunk_size!r}"
            raise ValueError(msg)
        self.chunk_size = chunk_size
        self.arch = router.config.architecture
        self.has_cost = router.has_cost
        self.n_members = len(router.members)
        self._fallback: HAPSRouter | None = None
        with torch.no_grad():
            self._build(router)

    def _build(self, router: HAPSRouter) -> None:
        members = list(router.members)
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
        trunk_lin = [m.trunk[1] for m in members]
        norms = [m.trunk[3] for m in members]
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
            lin0, lin1 = net.pgn[0], net.pgn[2]
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
        """Generated low-level heads' (quality, log-cost) corrections: [M, B, A, 2]."""
        n_m, bsz = z.shape[0], z.shape[1]
        n_b, m_dim, k, n_a = self.n_backends, self.m_dim, self.k, self.n_actions
        g = torch.nn.functional.gelu(torch.bmm(z, self.w_z)[:, :, None, :] + self.pgn_const)  # [M,B,n,h]
        gen = torch.baddbmm(self.b_gen, g.reshape(n_m, bsz * n_b, -1), self.w_gen)  # [M, B*n, P]
        gen = gen.reshape(n_m, bsz, n_b, -1)
        mk = m_dim * k
        w1 = gen[..., :mk].reshape(n_m, bsz, n_b, m_dim, k)
        # Every action through every backend's generated first layer as one GEMM per member
        # (phi [A, m] @ [m, n*B*k]), then each action keeps its own backend's row: a 1/n share
        # of the products is used, but that beats gathering a whole head per (query, action).
        w1 = w1.permute(0, 3, 2, 1, 4).reshape(n_m, m_dim, n_b * bsz * k)
        hid = torch.bmm(self.phi, w1).reshape(n_m, n_a, n_b, bsz, k)
        hid = hid[:, torch.arange(n_a, device=z.device), self.backend_of]  # [M, A, B, k]
        b1 = gen[..., mk : mk + k].permute(0, 2, 1, 3)[:, self.backend_of]  # [M, A, B, k]
        hid = torch.nn.functional.gelu(hid + b1)
        w2 = gen[..., mk + k :].reshape(n_m, bsz, n_b, k, 2).permute(0, 2, 1, 3, 4)[:, self.backend_of]
        delta = (hid[..., None] * w2).sum(-2)  # [M, A, B, 2]
        return delta.permute(0, 2, 1, 3)

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

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quality logits and log-costs [B, A] each, as `HAPSRouter.forward(features)` gives."""
        if self._fallback is not None:
            return self._fallback(features)
        x = ((features - self.feature_mean) / self.feature_std).clamp(-FEATURE_CLIP, FEATURE_CLIP)
        q, c = self._members(x)
        if self.n_members == 1:
            return q[0], c[0]
        prob = torch.sigmoid(q).mean(0).clamp(1e-6, 1 - 1e-6)
        return torch.log(prob) - torch.log1p(-prob), c.mean(0)

    @torch.inference_mode()
    def predict_features(self, features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted quality in [0, 1] and cost in USD: what `HAPSRouter.predict_features` gives."""
        x = torch.as_tensor(features, dtype=torch.float32, device=self.feature_mean.device)
        q, c = self(x)
        quality = torch.sigmoid(q).float().cpu().numpy()
        cost = torch.exp(c).float().cpu().numpy() if self.has_cost else np.zeros_like(quality)
        return quality, cost


def fuse_heads(router: HAPSRouter, chunk_size: int = 64) -> FusedRouterHeads:
    """A fused, inference-only snapshot of `router`'s heads (see `FusedRouterHeads`)."""
    heads = FusedRouterHeads(router, chunk_size=chunk_size).eval()
    return heads.to(router.feature_mean.device)


# ---------------------------------------------------------------------------------------------
# Encoders


def bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 matrix products natively (AVX512-BF16 or AMX).

    Without native support bf16 weights are emulated and can be *slower* than float32, so
    `optimize_encoder` refuses bf16 on a CPU that lacks it.
    """
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


class OptimizedEncoder(HFEncoder):
    """An `HFEncoder` whose model runs at another precision (or compiled); built by
    `optimize_encoder`, never directly. Same id (checkpoints name the same model), another
    fingerprint (an embedding cache keeps its vectors apart)."""

    precision: str
    compiled: bool

    def __init__(self, source: HFEncoder, model: Any, precision: str, compiled: bool) -> None:
        # Not HFEncoder.__init__: the tokenizer, limits and dimension are the source's.
        self.__dict__.update(source.__dict__)
        self.source = source  # the float32 encoder it was made from
        self.model = model
        self.precision = precision
        self.compiled = compiled

    @property
    def fingerprint(self) -> str:
        return f"{super().fingerprint}|precision={self.precision}|compiled={self.compiled}"


def optimize_encoder(
    encoder: HFEncoder,
    precision: Precision = "fp32",
    compile: bool = False,
) -> OptimizedEncoder:
    """A faster copy of a CPU `HFEncoder`: bf16 weights, dynamic int8 Linear layers, and/or
    `torch.compile`. The original encoder is left as it is.

    Trade-offs (measured by benchmarks/routing.py on MiniLM, 2 CPU cores): bf16 weights keep
    the embeddings to cosine ~0.9999 of float32 and are ~1.5-2x faster at batch 1 where the CPU
    has native bf16; int8 (per-channel dynamic quantisation) is ~3x faster at batch 1 but moves
    embeddings to cosine ~0.98, which changes a few percent of decisions. `compile` costs a
    compilation per new input shape (dynamic shapes limit that) and is for long-lived servers.

    Args:
        encoder: a loaded `HFEncoder` on CPU (not a `CachedEncoder`: wrap the result instead).
        precision: "fp32" (unchanged), "bf16" or "int8".
        compile: also wrap the model with ``torch.compile(dynamic=True)``.

    Raises:
        TypeError: `encoder` is not an `HFEncoder`.
        ValueError: unknown precision, a non-CPU encoder with int8, or bf16 on a CPU without
            native bf16.
    """
    if not isinstance(encoder, HFEncoder):
        msg = f"`encoder` must be an HFEncoder (unwrap a CachedEncoder first), got {type(encoder).__name__}"
        raise TypeError(msg)
    if precision not in PRECISIONS:
        msg = f"`precision` must be one of {PRECISIONS}, got {precision!r}"
        raise ValueError(msg)
    base_precision = getattr(encoder, "precision", "fp32")
    if base_precision != "fp32":
        msg = f"`encoder` is already optimised to {base_precision}; start from the float32 encoder"
        raise ValueError(msg)
    model = encoder.model
    if precision == "int8":
        if encoder.device.type != "cpu":
            msg = "int8 dynamic quantisation runs on CPU only; on CUDA use bf16 autocast instead"
            raise ValueError(msg)
        try:
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
        except ImportError as exc:  # deprecated in torch; a future release may drop it
            msg = f"int8 dynamic quantisation is not available in torch {torch.__version__}; use bf16"
            raise ValueError(msg) from exc

        with warnings.catch_warnings():
            # torch.ao.quantization is deprecated in favour of torchao, which is not a
            # dependency; the eager dynamic path still works and is what we measured.
            warnings.simplefilter("ignore")
            model = quantize_dynamic(
                copy.deepcopy(model), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
            )
    elif precision == "bf16":
        if encoder.device.type == "cpu" and not bf16_supported():
            msg = "this CPU has no native bfloat16 (AVX512-BF16/AMX): bf16 would be slower; use int8"
            raise ValueError(msg)
        model = copy.deepcopy(model).to(torch.bfloat16)
    elif compile:
        model = copy.deepcopy(model)
    model.eval()
    if compile:
        model = torch.compile(model, dynamic=True)
    logger.info("optimised encoder %s: precision=%s compile=%s", encoder.encoder_id, precision, compile)
    return OptimizedEncoder(encoder, model, precision, compile)
