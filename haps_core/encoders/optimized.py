"""Faster copies of a CPU encoder: bfloat16 weights, dynamic int8 Linear layers, torch.compile.

At batch 1 a small encoder is bound by reading its weights, so smaller weights are faster.
`optimize_encoder` returns a new encoder with the same `encoder_id` (checkpoints still name the
model) and its own cache fingerprint (an embedding cache never mixes precisions).
"""

import copy
import logging
import warnings
from typing import Literal, cast

import torch
from torch import nn

from haps_core.encoders.base import QueryEncoder
from haps_core.encoders.hf import HFEncoder
from haps_core.encoders.onnx import ONNX_PRECISIONS, OrtModel, export_onnx

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "int8", "onnx-fp32", "onnx-int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8", "onnx-fp32", "onnx-int8")


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

    def __init__(self, source: HFEncoder, model: nn.Module, precision: str, compiled: bool) -> None:
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
    encoder: QueryEncoder,
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
        precision: "fp32" (unchanged), "bf16" or "int8" (torch), or "onnx-fp32" / "onnx-int8":
            the forward pass on ONNX Runtime (`haps_core.encoders.onnx`: exported once into
            the HAPS cache; needs ``pip install "haps[onnx]"``).
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
    if precision in ONNX_PRECISIONS:
        if encoder.device.type != "cpu" or compile:
            msg = f"precision={precision!r} runs ONNX Runtime on CPU, without torch.compile"
            raise ValueError(msg)
        path = export_onnx(encoder.model, encoder.fingerprint, int8=precision == "onnx-int8")
        model = OrtModel(path)
    elif precision == "int8":
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
        # torch.compile's stubs type its result as a plain callable; given a Module it returns
        # an OptimizedModule, a Module that forwards attribute access to the one it wraps.
        model = cast(nn.Module, torch.compile(model, dynamic=True))
    logger.info("optimised encoder %s: precision=%s compile=%s", encoder.encoder_id, precision, compile)
    return OptimizedEncoder(encoder, model, precision, compile)
