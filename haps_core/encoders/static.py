"""StaticEncoder: a query vector as the mean of per-token vectors, with no transformer at run time.

Routing is mostly recognising what kind of question a query is, which static token vectors
distilled from MiniLM (`haps_core.encoders.distill`) carry at a tiny fraction of the cost:
tokenising (the Rust ``tokenizers`` library) plus one ``embedding_bag``. This module never
imports transformers; the distilled files are built once into the HAPS cache on first use.
"""

import filecmp
import json
import logging
import os
import shutil
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from haps_core.encoders.base import QueryEncoder
from haps_core.encoders.distill import CONFIG_FILE, RECIPE_VERSION, TOKENIZER_FILE, WEIGHTS_FILE
from haps_core.encoders.local import DEFAULT_ENCODER_ID, default_model_path
from haps_core.paths import default_cache_dir
from haps_core.wordpiece import tokenizer_path, wordpiece_flat

logger = logging.getLogger(__name__)

STATIC_ENCODER_ID = "static-minilm"
STATIC_ALIASES = frozenset({STATIC_ENCODER_ID, "static"})
_CACHE_NAME = f"{STATIC_ENCODER_ID}-v{RECIPE_VERSION}"


class StaticEncoder(QueryEncoder):
    """Mean of distilled token vectors, L2-normalised; CPU only, thread-safe.

    Args:
        folder: a folder written by `haps_core.encoders.distill.distill` (``model.safetensors``
            with ``embeddings`` ``[vocab, dim]``, ``tokenizer.json``, ``config.json``).
        encoder_id: the id stored in router checkpoints.

    Raises:
        ValueError: the folder is missing a file, or its files disagree.
    """

    def __init__(self, folder: str | os.PathLike[str], encoder_id: str = STATIC_ENCODER_ID) -> None:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        missing = [n for n in (WEIGHTS_FILE, TOKENIZER_FILE, CONFIG_FILE) if not (self.folder / n).is_file()]
        if missing:
            msg = f"folder={str(folder)!r} is not a static encoder: missing {', '.join(missing)}"
            raise ValueError(msg)
        self.config: dict[str, Any] = json.loads((self.folder / CONFIG_FILE).read_text())
        self.embeddings = load_file(self.folder / WEIGHTS_FILE)["embeddings"].to(torch.float32)
        self.tokenizer = Tokenizer.from_file(str(self.folder / TOKENIZER_FILE))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        vocab = self.tokenizer.get_vocab_size()
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] > vocab:
            msg = (
                f"folder={str(folder)!r}: embeddings {tuple(self.embeddings.shape)} do not fit the "
                f"tokenizer's vocabulary of {vocab}"
            )
            raise ValueError(msg)
        unk = self.tokenizer.token_to_id("[UNK]")
        self._unk = int(unk) if unk is not None and unk < self.embeddings.shape[0] else 0
        self._encoder_id = encoder_id
        self._shares_wordpiece = _same_file(self.folder / TOKENIZER_FILE, tokenizer_path)
        logger.info("Loaded static encoder %s (dim=%d) from %s", encoder_id, self.dim, self.folder)

    @property
    def encoder_id(self) -> str:
        return self._encoder_id

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def fingerprint(self) -> str:
        c = self.config
        return (
            f"{self._encoder_id}@static-v{c.get('recipe_version')}|source={c.get('source')}"
            f"|dims={c.get('dims')}|sha256={c.get('sha256')}"
        )

    def save(self, target: Path) -> None:
        """Writes this encoder's files into the new folder `target`: its vectors as held in memory,
        its tokenizer and config (what a router checkpoint carries for a refined encoder)."""
        from safetensors.torch import save_file

        target.mkdir(parents=True)
        weights = {"embeddings": self.embeddings.detach().to(torch.float32).contiguous()}
        save_file(weights, str(target / WEIGHTS_FILE), metadata={"sha256": str(self.config.get("sha256"))})
        source = self.folder / TOKENIZER_FILE
        if source.is_file():  # the same bytes: `_shares_wordpiece` compares them
            shutil.copyfile(source, target / TOKENIZER_FILE)
        else:
            self.tokenizer.save(str(target / TOKENIZER_FILE))
        (target / CONFIG_FILE).write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The token ids each text is averaged over (no special tokens; out-of-range ids: [UNK])."""
        flat, lengths = self._flat_ids(texts)
        bounds = np.cumsum(lengths)[:-1]
        return [row.tolist() for row in np.split(flat, bounds)]

    def _flat_ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """All texts' ids end to end (an empty text: one [UNK]) and each text's count."""
        if self._shares_wordpiece:  # the same ids the input-cost counts need: tokenised once
            flat, lengths = wordpiece_flat(texts)
        else:
            rows = [e.ids for e in self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)]
            lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
            flat = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        if not lengths.all():
            firsts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            flat = np.insert(flat, firsts[lengths == 0], self._unk)
            lengths = np.maximum(lengths, 1)
        return np.where(flat >= self.embeddings.shape[0], self._unk, flat), lengths

    def _encode(self, texts: list[str], batch_size: int, show_progress: bool) -> torch.Tensor:
        flat, lengths = self._flat_ids(texts)
        if len(texts) == 1:  # one query (the request path): numpy, without torch's per-op cost
            pooled = self.embeddings.detach().numpy()[flat].sum(axis=0) / np.float32(len(flat))
            return torch.from_numpy(pooled / max(float(np.sqrt(pooled @ pooled)), 1e-12))[None]
        offsets = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        with torch.no_grad():
            pooled = F.embedding_bag(
                torch.from_numpy(flat), self.embeddings, torch.from_numpy(offsets), mode="mean"
            )
            return F.normalize(pooled, p=2, dim=-1)


def _same_file(path: Path, other: Any) -> bool:
    """Whether `path` has the bytes of the file `other()` names (False when that is missing)."""
    try:
        return filecmp.cmp(path, other(), shallow=False)
    except (OSError, ImportError):
        return False


def static_encoder_dir(cache_root: Path | None = None) -> Path:
    """The distilled static encoder's folder in the HAPS cache, built on first use (~1 min, offline)."""
    target = (cache_root or default_cache_dir()) / _CACHE_NAME
    if (target / CONFIG_FILE).is_file():
        return target
    from haps_core.build_lock import building
    from haps_core.encoders.distill import distill

    with building(target):
        if (target / CONFIG_FILE).is_file():  # another process built it while this one waited
            return target
        logger.warning(
            "building the static encoder %s once into %s (about a minute)", STATIC_ENCODER_ID, target
        )
        return distill(default_model_path(), target, source_id=DEFAULT_ENCODER_ID)


def load_static_encoder(cache_root: Path | None = None, **kwargs: Any) -> StaticEncoder:
    """The static encoder distilled from the bundled MiniLM (built into the cache if needed).

    Raises:
        ValueError: a keyword other than ``device="cpu"``/``"auto"``/None was given.
    """
    device = kwargs.pop("device", "cpu")
    kwargs.pop("local_files_only", None)  # always offline
    if device not in (None, "auto", "cpu") and str(device) != "cpu":
        msg = f"device={device!r}: the static encoder runs on CPU only; use 'cpu' or 'auto'"
        raise ValueError(msg)
    if kwargs:
        msg = f"the static encoder takes no options, got {sorted(kwargs)}"
        raise ValueError(msg)
    return StaticEncoder(static_encoder_dir(cache_root))
