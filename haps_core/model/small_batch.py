"""The fused heads in numpy, for a few queries at a time: the single-query request path.

At batch 1 the fused heads are some 25 small torch operations whose fixed cost (dispatch,
allocation: several microseconds each on a small CPU) is most of their time; the same products
in numpy cost a fraction of it. `SmallBatchHeads` is a numpy twin of `FusedRouterHeads`, made
from its buffers, equal to it to float32 rounding (the GELUs are torch's own, on numpy memory).
Larger batches stay on torch, which spreads them over the cores.
"""

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from haps_core.model.config import FEATURE_CLIP

if TYPE_CHECKING:
    from haps_core.model.fused import FusedRouterHeads

# Up to this many queries the numpy path is faster (with more, torch's per-op cost is spread).
SMALL_BATCH = 2


# Products of more multiply-adds than this run in torch: numpy's BLAS would run them on threads of
# its own, which spin beside torch's (a 5 x 256 router's batch-1 heads took 10 ms instead of 1).
TORCH_MACS = 1 << 16


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b``: small products in numpy, large ones in torch (on the same memory)."""
    batch = math.prod(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    if batch * a.shape[-2] * a.shape[-1] * b.shape[-1] > TORCH_MACS:
        return torch.matmul(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    return a @ b


def _gelu(a: np.ndarray) -> np.ndarray:
    """torch's exact GELU on a numpy array (no copy in or out)."""
    return torch.nn.functional.gelu(torch.from_numpy(a)).numpy()


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy()


class SmallBatchHeads:
    """A numpy twin of a `FusedRouterHeads` ("haps" or "flat"), for small batches on CPU."""

    def __init__(self, heads: "FusedRouterHeads") -> None:
        self.n_members, self.n_deep, self.n_actions = heads.n_members, heads.n_deep, heads.n_actions
        self.arch = heads.arch
        self.mean, self.std = _array(heads.feature_mean), _array(heads.feature_std)
        self.w_in = np.ascontiguousarray(_array(heads.w_in).T)  # [F, D*h + M*2A]
        self.b_in = _array(heads.b_in)
        self.deep_idx = heads.deep_idx.cpu().numpy()
        if not self.n_deep:
            return
        self.hidden, self.ln_eps = heads.hidden, heads.ln_eps
        self.ln_weight, self.ln_bias = _array(heads.ln_weight), _array(heads.ln_bias)
        if self.arch == "flat":
            self.w_head, self.b_head = _array(heads.w_head), _array(heads.b_head)
            return
        self.n_backends, self.m_dim, self.k = heads.n_backends, heads.m_dim, heads.k
        self.backend_of = heads.backend_of.cpu().numpy()
        self.w_high, self.b_high = _array(heads.w_high), _array(heads.b_high)
        self.w_z, self.pgn_const = _array(heads.w_z), _array(heads.pgn_const)
        self.w_gen, self.b_gen = _array(heads.w_gen), _array(heads.b_gen)[:, None]
        self.slot_groups = list(heads.slot_groups)
        self.phi_pads = [_array(getattr(heads, f"phi_pad_{i}")) for i in range(len(self.slot_groups))]
        self.action_slot = heads.action_slot.cpu().numpy()

    def member_outputs(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every member's quality logits and log-costs, [M, B, A] float32 each."""
        x = np.clip((features - self.mean) / self.std, -FEATURE_CLIP, FEATURE_CLIP)
        out = _matmul(x, self.w_in) + self.b_in
        n_m, n_d, n_a, bsz = self.n_members, self.n_deep, self.n_actions, x.shape[0]
        h = self.hidden if n_d else 0
        skip = out[:, n_d * h :].reshape(bsz, n_m, 2 * n_a).transpose(1, 0, 2)
        q_all, c_all = skip[..., :n_a], skip[..., n_a:]
        if not n_d:
            return q_all, c_all
        g = _gelu(np.ascontiguousarray(out[:, : n_d * h].reshape(bsz, n_d, h).transpose(1, 0, 2)))
        inv_h = np.float32(1.0 / h)  # sums, not `mean`: its Python wrapper costs more than the sum
        centred = g - g.sum(-1, keepdims=True) * inv_h
        var = np.square(centred).sum(-1, keepdims=True) * inv_h
        z = centred / np.sqrt(var + self.ln_eps) * self.ln_weight + self.ln_bias  # [D, B, h]
        q, c = q_all[self.deep_idx], c_all[self.deep_idx]
        if self.arch == "flat":
            head = _matmul(z, self.w_head) + self.b_head
            q, c = q + head[..., :n_a], c + head[..., n_a:]
        else:
            high = _matmul(z, self.w_high) + self.b_high  # [D, B, 2n]
            n_b = self.n_backends
            delta = self._low_level(z)
            q = q + high[..., :n_b][..., self.backend_of] + delta[..., 0]
            c = c + high[..., n_b:][..., self.backend_of] + delta[..., 1]
        if n_d == n_m:
            return q, c
        q_all, c_all = q_all.copy(), c_all.copy()
        q_all[self.deep_idx], c_all[self.deep_idx] = q, c
        return q_all, c_all

    def _low_level(self, z: np.ndarray) -> np.ndarray:
        """`FusedRouterHeads._low_level` in numpy: [D, B, A, 2]."""
        g = _gelu(_matmul(z, self.w_z)[:, :, None, :] + self.pgn_const)  # [D, B, n, h]
        n_d, bsz, n_b, h = g.shape
        # stacked 2-D products of contiguous operands: numpy hands each to BLAS
        gen = _matmul(g.reshape(n_d, bsz * n_b, h), self.w_gen).reshape(n_d, bsz, n_b, -1) + self.b_gen
        m_dim, k = self.m_dim, self.k
        mk = m_dim * k
        parts = []
        for (start, end, slots), phi in zip(self.slot_groups, self.phi_pads, strict=True):
            part = gen[:, :, start:end]
            n_g = end - start
            hid = _matmul(phi, part[..., :mk].reshape(n_d, bsz, n_g, m_dim, k)) + part[..., None, mk : mk + k]
            w2 = part[..., mk + k :].reshape(n_d, bsz, n_g, k, 2)
            parts.append(_matmul(_gelu(hid), w2).reshape(n_d, bsz, n_g * slots, 2))
        delta = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)
        return delta[:, :, self.action_slot]


def small_batch_heads(heads: "FusedRouterHeads") -> SmallBatchHeads | None:
    """The numpy twin of `heads` (made once per heads object), or None where it does not apply
    (the "no_pgn" ablation's fallback, or heads on an accelerator)."""
    if heads._fallback is not None or heads.feature_mean.device.type != "cpu":
        return None
    twin = heads.__dict__.get("_small_batch")
    if twin is None:
        twin = SmallBatchHeads(heads)
        heads.__dict__["_small_batch"] = twin
    return twin


def ensemble_predictions(q: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quality [B, A], mean log-cost [B, A] and the members' spread of quality, from the
    members' [M, B, A] (as `ensemble_mean`, `spread_of` and a sigmoid give them in torch: the
    mean of the members' probabilities, clipped to [1e-6, 1 - 1e-6])."""
    prob = 1.0 / (1.0 + np.exp(-q))
    if q.shape[0] == 1:
        return prob[0], c[0], np.zeros_like(prob[0])
    inv_m = np.float32(1.0 / q.shape[0])
    mean = prob.sum(0) * inv_m
    spread = np.sqrt(np.square(prob - mean).sum(0) * inv_m)
    return np.clip(mean, 1e-6, 1 - 1e-6), c.sum(0) * inv_m, spread


def small_batch_predictions(
    heads: "FusedRouterHeads", features: torch.Tensor | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Quality, cost (USD, float64) and spread [B, A] for up to `SMALL_BATCH` queries through the
    numpy twin of `heads`; None for larger batches or where the twin does not apply."""
    if len(features) > SMALL_BATCH:
        return None
    twin = small_batch_heads(heads)
    if twin is None:
        return None
    x = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    quality, log_cost, spread = ensemble_predictions(*twin.member_outputs(x.astype(np.float32)))
    return quality, np.exp(log_cost).astype(np.float64), spread
