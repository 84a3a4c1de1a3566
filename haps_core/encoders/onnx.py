"""A transformer encoder's forward pass on ONNX Runtime, in float32 or dynamic int8.

For users who keep a transformer encoder (the MiniLM router, their own): the model is exported
to ONNX once, offline, and quantised to int8 if asked, into the HAPS cache; routing then runs
it on ONNX Runtime instead of torch. Tokenising and pooling stay the `HFEncoder`'s own, so only
the forward pass changes. Needs the optional extra ``pip install "haps[onnx]"`` (onnxruntime
and onnx); `haps_core.encoders.optimized.optimize_encoder` is the way in
(``precision="onnx-fp32"`` or ``"onnx-int8"``).
"""

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from haps_core.paths import default_cache_dir

logger = logging.getLogger(__name__)

ONNX_PRECISIONS = ("onnx-fp32", "onnx-int8")
_OPSET = 17
_INSTALL = 'ONNX Runtime is not installed: `pip install "haps[onnx]"` (onnxruntime and onnx)'


class _LastHidden(nn.Module):
    """The model with the call signature the exporter traces: ids and mask in, hidden states out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def onnx_folder(fingerprint: str, cache_root: Path | None = None) -> Path:
    """Where the ONNX files of the encoder with this fingerprint are kept."""
    key = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    return (cache_root or default_cache_dir()) / "onnx" / key


def _atomic(target: Path, write: Any) -> Path:
    """Writes `target` through a temporary file in its folder, renamed over it when complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def export_onnx(model: nn.Module, fingerprint: str, int8: bool, cache_root: Path | None = None) -> Path:
    """The ONNX file of `model` (float32, or int8 weights), exported on first use and cached."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ValueError(_INSTALL) from exc
    folder = onnx_folder(fingerprint, cache_root)
    fp32 = folder / "model-fp32.onnx"
    if not fp32.is_file():
        logger.info("exporting %s to ONNX into %s (once)", fingerprint, folder)
        ids = torch.ones((2, 8), dtype=torch.long)
        axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
        axes["last_hidden_state"] = {0: "batch", 1: "tokens"}

        def write_fp32(path: Path) -> None:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
                torch.onnx.export(
                    _LastHidden(model).eval(),
                    (ids, torch.ones_like(ids)),
                    str(path),
                    input_names=["input_ids", "attention_mask"],
                    output_names=["last_hidden_state"],
                    dynamic_axes=axes,
                    opset_version=_OPSET,
                    dynamo=False,
                )

        _atomic(fp32, write_fp32)
    if not int8:
        return fp32
    q8 = folder / "model-int8.onnx"
    if not q8.is_file():
        # per output channel: on MiniLM, embedding cosines to float32 of 0.975-0.997 on short
        # queries, against 0.92-0.98 with one scale per tensor
        def write_int8(path: Path) -> None:
            quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, per_channel=True)

        _atomic(q8, write_int8)
    return q8


class OrtModel(nn.Module):
    """An ONNX Runtime session in the place of the transformer: called like it
    (``model(input_ids=..., attention_mask=...).last_hidden_state``), on CPU, thread-safe."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ValueError(_INSTALL) from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        feeds = {
            "input_ids": input_ids.detach().cpu().numpy().astype(np.int64, copy=False),
            "attention_mask": attention_mask.detach().cpu().numpy().astype(np.int64, copy=False),
        }
        (hidden,) = self.session.run(["last_hidden_state"], feeds)
        return SimpleNamespace(last_hidden_state=torch.from_numpy(hidden))
