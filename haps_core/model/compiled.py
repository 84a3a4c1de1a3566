"""The fused heads as one ONNX Runtime graph: a serving process's routing products, compiled.

In numpy (one or two queries) or torch (more), the heads are some 40 array operations, and on a
small CPU each costs microseconds of dispatch and allocation before any arithmetic. Built as one
ONNX graph from the same buffers and run by ONNX Runtime, the whole ensemble (normalisation,
trunks, high-level heads, parameter generation network, ensemble mean and spread) is one call.
`python benchmarks/routing.py --heads-runtime eager|onnxruntime` measures what it saves.

The graph is built in memory from a `SmallBatchHeads` (nothing is written or read: no model file
next to the checkpoint), so it is a snapshot of the same weights and is rebuilt with the fused
heads whenever they change. It equals the torch heads to float32 rounding (tests). Building and
importing ONNX Runtime cost some 0.25 s, more than a short-lived process gains, so ``"auto"``
compiles a heads snapshot only once it has served `COMPILE_AFTER` calls; a one-shot
``haps route --query`` never pays it. Needs the ``onnx`` extra (``pip install "haps[onnx]"``);
without it ``"auto"`` keeps the numpy and torch paths.
"""

import importlib.util
import logging
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from haps_core.model.config import FEATURE_CLIP
from haps_core.model.small_batch import SmallBatchHeads, small_batch_heads, small_batch_predictions

if TYPE_CHECKING:
    from haps_core.model.fused import FusedRouterHeads

logger = logging.getLogger(__name__)

HEADS_RUNTIMES = ("auto", "onnxruntime", "eager")
# calls a heads snapshot serves on the eager paths before "auto" compiles it
COMPILE_AFTER = 32
CHUNK = 64  # queries per ONNX Runtime call (the torch heads chunk their low-level heads alike)
_OPSET = 20  # the first with a standard (exact, erf) Gelu
_OUTPUTS = ("quality", "log_cost", "spread")
_warned: set[str] = set()
_lock = threading.Lock()


def check_heads_runtime(value: object) -> str:
    """`value` if it names a heads runtime (`HEADS_RUNTIMES`), else a ValueError."""
    if isinstance(value, str) and value in HEADS_RUNTIMES:
        return value
    msg = (
        f"`heads_runtime` must be one of {HEADS_RUNTIMES} ('auto': ONNX Runtime once a router has "
        f"served {COMPILE_AFTER} calls, if installed; 'eager': numpy and torch), got {value!r}"
    )
    raise ValueError(msg)


def onnxruntime_available() -> bool:
    """Whether the ``onnx`` extra (onnx and onnxruntime) is installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


class _Graph:
    """An ONNX graph under construction: nodes, initialisers and fresh names."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.n = 0

    def _name(self) -> str:
        self.n += 1
        return f"v{self.n}"

    def const(self, value: Any) -> str:
        name = self._name()
        self.inits.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def ints(self, *values: int) -> str:
        return self.const(np.array(values, dtype=np.int64))

    def op(self, kind: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        name = out or self._name()
        self.nodes.append(self.helper.make_node(kind, list(inputs), [name], **attrs))
        return name

    def cut(self, x: str, start: int, end: int, axis: int) -> str:
        return self.op("Slice", x, self.ints(start), self.ints(end), self.ints(axis))

    def linear(self, x: str, w: np.ndarray, b: np.ndarray) -> str:
        return self.op("Add", self.op("MatMul", x, self.const(w)), self.const(b))


def _low_level(g: _Graph, t: SmallBatchHeads, z: str) -> str:
    """`SmallBatchHeads._low_level` as graph nodes: [D, B, A, 2]."""
    n_d, m_dim, k = t.n_deep, t.m_dim, t.k
    mk = m_dim * k
    by_query = g.op("Unsqueeze", g.op("MatMul", z, g.const(t.w_z)), g.ints(2))  # [D, B, 1, h]
    hidden = g.op("Add", by_query, g.const(t.pgn_const))  # [D, B, n, h]: each backend's input
    w_gen = g.op("Unsqueeze", g.const(t.w_gen), g.ints(1))  # [D, 1, h, G]: one product per backend
    gen = g.op("Add", g.op("MatMul", g.op("Gelu", hidden), w_gen), g.const(t.b_gen))  # [D, B, n, G]
    parts = []
    for (start, end, slots), phi in zip(t.slot_groups, t.phi_pads, strict=True):
        n_g = end - start
        part = g.cut(gen, start, end, 2)
        w1 = g.op("Reshape", g.cut(part, 0, mk, 3), g.ints(n_d, -1, n_g, m_dim, k))
        b1 = g.op("Unsqueeze", g.cut(part, mk, mk + k, 3), g.ints(3))
        w2 = g.op("Reshape", g.cut(part, mk + k, mk + 3 * k, 3), g.ints(n_d, -1, n_g, k, 2))
        hid = g.op("Gelu", g.op("Add", g.op("MatMul", g.const(phi), w1), b1))
        parts.append(g.op("Reshape", g.op("MatMul", hid, w2), g.ints(n_d, -1, n_g * slots, 2)))
    delta = parts[0] if len(parts) == 1 else g.op("Concat", *parts, axis=2)
    return g.op("Gather", delta, g.const(t.action_slot.astype(np.int64)), axis=2)


def _members(g: _Graph, t: SmallBatchHeads) -> tuple[str, str]:
    """Graph nodes of `SmallBatchHeads.member_outputs`: the members' quality logits and
    log-costs, [M, B, A] each (the members with deep heads first: the ensemble does not care)."""
    n_m, n_d, n_a = t.n_members, t.n_deep, t.n_actions
    h = t.hidden if n_d else 0
    x = g.op("Div", g.op("Sub", "features", g.const(t.mean)), g.const(t.std))
    x = g.op("Clip", x, g.const(np.float32(-FEATURE_CLIP)), g.const(np.float32(FEATURE_CLIP)))
    out = g.linear(x, t.w_in, t.b_in)
    skip = g.op("Reshape", g.cut(out, n_d * h, n_d * h + n_m * 2 * n_a, 1), g.ints(0, n_m, 2 * n_a))
    skip = g.op("Transpose", skip, perm=[1, 0, 2])
    q_all, c_all = g.cut(skip, 0, n_a, 2), g.cut(skip, n_a, 2 * n_a, 2)
    if not n_d:
        return q_all, c_all
    trunk = g.op("Reshape", g.cut(out, 0, n_d * h, 1), g.ints(0, n_d, h))
    act = g.op("Gelu", g.op("Transpose", trunk, perm=[1, 0, 2]))  # [D, B, h]
    centred = g.op("Sub", act, g.op("ReduceMean", act, g.ints(-1), keepdims=1))
    var = g.op("ReduceMean", g.op("Mul", centred, centred), g.ints(-1), keepdims=1)
    scale = g.op("Sqrt", g.op("Add", var, g.const(np.float32(t.ln_eps))))
    z = g.op("Add", g.op("Mul", g.op("Div", centred, scale), g.const(t.ln_weight)), g.const(t.ln_bias))
    deep = g.const(t.deep_idx.astype(np.int64))
    q, c = g.op("Gather", q_all, deep, axis=0), g.op("Gather", c_all, deep, axis=0)
    if t.arch == "flat":
        head = g.linear(z, t.w_head, t.b_head)
        q, c = g.op("Add", q, g.cut(head, 0, n_a, 2)), g.op("Add", c, g.cut(head, n_a, 2 * n_a, 2))
    else:
        n_b = t.n_backends
        high = g.linear(z, t.w_high, t.b_high)
        backend_of = g.const(t.backend_of.astype(np.int64))
        delta = _low_level(g, t, z)
        q_high, c_high = g.cut(high, 0, n_b, 2), g.cut(high, n_b, 2 * n_b, 2)
        q_low, c_low = (g.op("Squeeze", g.cut(delta, i, i + 1, 3), g.ints(3)) for i in (0, 1))
        q = g.op("Add", g.op("Add", q, g.op("Gather", q_high, backend_of, axis=2)), q_low)
        c = g.op("Add", g.op("Add", c, g.op("Gather", c_high, backend_of, axis=2)), c_low)
    if n_d < n_m:
        linear = g.ints(*sorted(set(range(n_m)) - set(t.deep_idx.tolist())))
        q = g.op("Concat", q, g.op("Gather", q_all, linear, axis=0), axis=0)
        c = g.op("Concat", c, g.op("Gather", c_all, linear, axis=0), axis=0)
    return q, c


def heads_graph(t: SmallBatchHeads) -> bytes:
    """The serialised ONNX model of `t`: features [B, F] float32 -> quality (the members' mean
    probability, clipped as `ensemble_predictions` clips it), mean log-cost and the members'
    spread of quality, [B, A] float32 each."""
    g = _Graph()
    q, c = _members(g, t)
    prob = g.op("Sigmoid", q)
    mean = g.op("ReduceMean", prob, g.ints(0), keepdims=0)
    if t.n_members == 1:
        g.op("Identity", mean, out="quality")
    else:
        g.op("Clip", mean, g.const(np.float32(1e-6)), g.const(np.float32(1 - 1e-6)), out="quality")
    g.op("ReduceMean", c, g.ints(0), keepdims=0, out="log_cost")
    d = g.op("Sub", prob, mean)
    g.op("Sqrt", g.op("ReduceMean", g.op("Mul", d, d), g.ints(0), keepdims=0), out="spread")
    hp = g.helper
    from onnx import TensorProto

    n_f, n_a = int(t.mean.shape[0]), t.n_actions
    graph = hp.make_graph(
        g.nodes,
        "haps_heads",
        [hp.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n_f])],
        [hp.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", n_a]) for n in _OUTPUTS],
        g.inits,
    )
    return bytes(hp.make_model(graph, opset_imports=[hp.make_opsetid("", _OPSET)]).SerializeToString())


def cpu_session(model: bytes, threads: int) -> Any:
    """An ONNX Runtime CPU session of a serialised graph, on `threads` intra-op threads, quiet."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    # idle threads sleep: they would spin beside the single-threaded rest of the call
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class CompiledHeads:
    """An ONNX Runtime session of a heads snapshot, on `threads` intra-op threads."""

    def __init__(self, t: SmallBatchHeads, threads: int) -> None:
        self.session = cpu_session(heads_graph(t), threads)
        self.threads = threads

    def predictions(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Quality, cost (USD, float64) and spread [B, A], as `small_batch_predictions`; a large
        batch in chunks of `CHUNK` queries, whose intermediates stay in the caches (those of 256
        queries at once take some 10 MB)."""
        if len(features) <= CHUNK:
            quality, log_cost, spread = self.session.run(None, {"features": features})
        else:
            parts = [
                self.session.run(None, {"features": features[s : s + CHUNK]})
                for s in range(0, len(features), CHUNK)
            ]
            quality, log_cost, spread = (np.concatenate([p[i] for p in parts]) for i in range(3))
        return quality, np.exp(log_cost).astype(np.float64), spread


def compiled_heads(heads: "FusedRouterHeads", runtime: str, threads: int) -> CompiledHeads | None:
    """The ONNX Runtime session of `heads` when `runtime` wants one now (see the module
    docstring), built once per heads snapshot; None for the eager paths. ``"onnxruntime"``
    without the extra installed is an ImportError; a graph that fails to build under ``"auto"``
    is logged once and the eager paths serve."""
    state = heads.__dict__
    got = state.get("_compiled")
    if got is False or runtime == "eager":  # could not be built, or not wanted
        return None
    if got is not None:
        return got if got.threads == threads else _build(heads, runtime, threads)
    if small_batch_heads(heads) is None:
        return None
    if runtime == "auto":
        state["_calls"] = calls = state.get("_calls", 0) + 1
        if calls <= COMPILE_AFTER:
            return None
        if not onnxruntime_available():
            state["_compiled"] = False
            return None
    elif not onnxruntime_available():
        msg = "`heads_runtime='onnxruntime'` needs the onnx extra: pip install \"haps[onnx]\""
        raise ImportError(msg)
    return _build(heads, runtime, threads)


def _build(heads: "FusedRouterHeads", runtime: str, threads: int) -> CompiledHeads | None:
    twin = small_batch_heads(heads)
    if twin is None:
        return None
    try:
        compiled = CompiledHeads(twin, threads)
    except Exception as err:  # an old or odd ONNX Runtime: the eager paths still work
        if runtime == "onnxruntime":
            raise
        with _lock:
            if type(err).__name__ not in _warned:
                _warned.add(type(err).__name__)
                logger.warning("ONNX Runtime could not run the router heads (%s); using numpy/torch", err)
        heads.__dict__["_compiled"] = False
        return None
    heads.__dict__["_compiled"] = compiled
    logger.debug("router heads compiled for ONNX Runtime (%d threads)", threads)
    return compiled


def fast_predictions(
    heads: "FusedRouterHeads", features: torch.Tensor | np.ndarray, runtime: str, threads: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Quality, cost and spread [B, A] through the compiled heads where `runtime` has them,
    else through the numpy twin for a few queries; None: the caller runs the torch heads."""
    n_threads = threads if threads is not None else torch.get_num_threads()
    compiled = compiled_heads(heads, runtime, n_threads)
    if compiled is None:
        return small_batch_predictions(heads, features)
    x = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    return compiled.predictions(np.ascontiguousarray(x, dtype=np.float32))
