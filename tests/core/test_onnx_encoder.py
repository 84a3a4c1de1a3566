"""Transformer encoders on ONNX Runtime (issue 18): float32 equal to torch, int8 close, cached.

REAL: the bundled MiniLM (`HFEncoder`), torch's ONNX exporter, onnxruntime and its dynamic int8
quantisation, the shipped MiniLM router and the `haps route` CLI. The HAPS cache is a fresh
folder per module, so the export runs here.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from haps_core import HAPSRouter
from haps_core.encoders import HFEncoder, embedding_encoder, optimize_encoder
from haps_core.encoders.onnx import OrtModel, onnx_folder
from haps_core.paths import default_cache_dir

# The user's HAPS cache, read before the module's fixture points HAPS_CACHE_DIR at a fresh folder:
# the static default router's encoder is built there once, not again for this module (~35 s).
USER_CACHE = default_cache_dir()

CLI = "import sys; from haps_core.cli import main; sys.exit(main(sys.argv[1:]))"
TEXTS = [
    "What is the capital of Australia?",
    "Solve for x: 3x + 5 = 20.",
    "Write a Python function that reverses a linked list.",
    "Which of the following best describes photosynthesis? (A) respiration (B) light to chemical energy",
    "hi",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("haps-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HAPS_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def minilm(cache: Path) -> HFEncoder:
    encoder = embedding_encoder(device="cpu")
    encoder = getattr(encoder, "encoder", encoder)
    assert isinstance(encoder, HFEncoder)
    return encoder


def test_onnx_fp32_equals_torch_and_is_cached(minilm: HFEncoder, cache: Path) -> None:
    fast = optimize_encoder(minilm, "onnx-fp32")
    assert isinstance(fast.model, OrtModel)
    assert fast.encoder_id == minilm.encoder_id and fast.fingerprint != minilm.fingerprint
    with torch.no_grad():
        ref = minilm.encode(TEXTS)
    got = fast.encode(TEXTS)
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=0)
    path = onnx_folder(minilm.fingerprint, cache) / "model-fp32.onnx"
    assert path.is_file() and fast.model.path == path
    before = path.stat().st_mtime_ns
    again = optimize_encoder(minilm, "onnx-fp32")  # the cached file, not a new export
    assert path.stat().st_mtime_ns == before
    torch.testing.assert_close(again.encode(TEXTS[:2]), got[:2])


def test_onnx_int8_is_close_and_fingerprinted_apart(minilm: HFEncoder) -> None:
    fp32 = optimize_encoder(minilm, "onnx-fp32")
    int8 = optimize_encoder(minilm, "onnx-int8")
    assert int8.fingerprint not in (fp32.fingerprint, minilm.fingerprint)
    assert Path(int8.model.path).name == "model-int8.onnx"
    assert Path(int8.model.path).stat().st_size < 0.5 * Path(fp32.model.path).stat().st_size
    cos = (int8.encode(TEXTS) * minilm.encode(TEXTS)).sum(dim=1)
    assert float(cos.min()) > 0.95, cos


def test_onnx_refuses_compile_and_static_routers(minilm: HFEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="ONNX Runtime on CPU"):
        optimize_encoder(minilm, "onnx-int8", compile=True)
    monkeypatch.setenv("HAPS_CACHE_DIR", str(USER_CACHE))
    with pytest.raises(ValueError, match="transformer encoders"):
        HAPSRouter.from_pretrained("haps-default").set_encoder_precision("onnx-int8")


def test_minilm_router_routes_on_onnx_in_python_and_the_cli(minilm: HFEncoder, cache: Path) -> None:
    samples = [
        json.loads(line)["query"] for line in Path("cookbook/sample_queries.jsonl").read_text().splitlines()
    ]
    router = HAPSRouter.from_pretrained("haps-default-minilm")
    torch_actions = [d.action_index for d in router.route(samples, 20.0)]
    router.set_encoder_precision("onnx-fp32")
    assert [d.action_index for d in router.route(samples, 20.0)] == torch_actions
    router.set_encoder_precision("onnx-int8")
    agree = np.mean(
        [d.action_index == a for d, a in zip(router.route(samples, 20.0), torch_actions, strict=True)]
    )
    assert agree >= 0.75
    env = {**os.environ, "HAPS_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    argv = [
        "route",
        "--router",
        "haps-default-minilm",
        "--encoder-precision",
        "onnx-int8",
        "--query",
        samples[0],
    ]
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from haps_core.cli import main; sys.exit(main(sys.argv[1:]))",
            *argv,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[0])["backend"] in router.space.backend_names
