"""The OOD evidence as an ONNX Runtime graph, beside the compiled heads.

`haps_core.model.ood.evidence` is some 15 small numpy operations a call (unit embeddings, the
nearest stored training queries, the Mahalanobis score, coverage and backend support): at
batch 1, much of their time is dispatch. Where the router's heads run compiled
(`haps_core.model.compiled`), the evidence runs as one graph too, built in memory from the same
statistics arrays and rebuilt with them. It agrees with the numpy evidence to float32 rounding:
the same neighbours (ONNX ``TopK`` breaks ties toward the lower index, as a stable sort does),
the same coverage and support, and the Mahalanobis score in float64, as numpy has it (tests).
"""

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from haps_core.model.compiled import CompiledHeads, _Graph, cpu_session

if TYPE_CHECKING:
    from haps_core.model.ood import OODStats, _StatisticsArrays
    from haps_core.model.router import HAPSRouter

logger = logging.getLogger(__name__)
_OUTPUTS = ("score", "index", "similarity", "coverage", "backend_support")


def evidence_graph(arrays: "_StatisticsArrays", stats: "OODStats", embed_dim: int, n_features: int) -> bytes:
    """The serialised ONNX model: features [B, F] -> the `Evidence` arrays (but the flag)."""
    from onnx import TensorProto

    g = _Graph()
    emb = g.cut("features", 0, embed_dim, 1)
    norm = g.op("Sqrt", g.op("ReduceSum", g.op("Mul", emb, emb), g.ints(1), keepdims=1))
    unit = g.op("Div", emb, g.op("Max", norm, g.const(np.float32(1e-12))))
    sim = g.op("MatMul", unit, g.const(np.ascontiguousarray(arrays.bank.T, dtype=np.float32)))
    k = min(stats.k, len(arrays.bank))
    values, index = (g._name(), g._name())
    g.nodes.append(g.helper.make_node("TopK", [sim, g.ints(k)], [values, index], axis=1, largest=1, sorted=1))
    g.op("Identity", values, out="similarity")
    g.op("Identity", index, out="index")
    observed = g.const(arrays.observed.astype(np.float32))
    g.op("ReduceMean", g.op("Gather", observed, index, axis=0), g.ints(1), keepdims=0, out="coverage")
    by_backend = g.const(arrays.backend_observed.astype(np.float32))
    g.op("ReduceSum", g.op("Gather", by_backend, index, axis=0), g.ints(1), keepdims=0, out="backend_support")
    if stats.method == "mahalanobis" and arrays.precision is not None:
        # in float64, as numpy computes it: a small router's precision matrix can have entries
        # large enough for float32 to move a score across the threshold
        d = g.op("Sub", g.op("Cast", unit, to=TensorProto.DOUBLE), g.const(arrays.mean.astype(np.float64)))
        spread = g.op("Mul", g.op("MatMul", d, g.const(arrays.precision.astype(np.float64))), d)
        g.op("ReduceSum", spread, g.ints(1), keepdims=0, out="score")
    else:
        knn = g.op("Sub", g.const(np.float32(1.0)), g.op("ReduceMean", values, g.ints(1), keepdims=0))
        g.op("Cast", knn, to=TensorProto.DOUBLE, out="score")
    hp = g.helper
    n_a, n_b = arrays.observed.shape[1], arrays.backend_observed.shape[1]
    outputs = [
        hp.make_tensor_value_info("score", TensorProto.DOUBLE, ["batch"]),
        hp.make_tensor_value_info("index", TensorProto.INT64, ["batch", k]),
        hp.make_tensor_value_info("similarity", TensorProto.FLOAT, ["batch", k]),
        hp.make_tensor_value_info("coverage", TensorProto.FLOAT, ["batch", n_a]),
        hp.make_tensor_value_info("backend_support", TensorProto.FLOAT, ["batch", n_b]),
    ]
    inputs = [hp.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n_features])]
    graph = hp.make_graph(g.nodes, "haps_evidence", inputs, outputs, g.inits)
    return bytes(hp.make_model(graph, opset_imports=[hp.make_opsetid("", 20)]).SerializeToString())


class CompiledEvidence:
    """An ONNX Runtime session of a router's evidence (see the module docstring)."""

    def __init__(self, arrays: "_StatisticsArrays", stats: "OODStats", embed_dim: int, n_features: int,
                 threads: int) -> None:  # fmt: skip
        self.session = cpu_session(evidence_graph(arrays, stats, embed_dim, n_features), threads)

    def run(self, features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, ...]:
        """(score, index int64, similarity, coverage, backend support): float64 but the similarity."""
        x = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
        score, index, sim, coverage, support = self.session.run(
            list(_OUTPUTS), {"features": np.ascontiguousarray(x, dtype=np.float32)}
        )
        return score.astype(np.float64), index, sim, coverage.astype(np.float64), support.astype(np.float64)


def compiled_evidence(router: "HAPSRouter", arrays: "_StatisticsArrays", stats: "OODStats") -> Any:
    """The router's `CompiledEvidence` when its heads run compiled (built once per statistics
    arrays); None otherwise, or when the graph could not be built (logged once)."""
    fused = router.__dict__.get("_fused_heads")
    heads = None if fused is None else fused[1].__dict__.get("_compiled")
    if not isinstance(heads, CompiledHeads):
        return None
    held = router.__dict__.get("_compiled_evidence")
    if held is not None and held[0] is arrays:
        return held[1]
    try:
        session: CompiledEvidence | None = CompiledEvidence(
            arrays, stats, router.config.embed_dim, int(router.feature_mean.shape[0]), heads.threads
        )
    except Exception as err:  # an old or odd ONNX Runtime: numpy still computes the evidence
        logger.warning("ONNX Runtime could not run the OOD evidence (%s); using numpy", err)
        session = None
    router.__dict__["_compiled_evidence"] = (arrays, session)
    return session
