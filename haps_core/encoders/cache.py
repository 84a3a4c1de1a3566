"""CachedEncoder: an on-disk embedding cache in front of any encoder, in safetensors shards."""

import hashlib
import logging
import os
import re
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from haps_core.encoders.base import QueryEncoder, text_hash

logger = logging.getLogger(__name__)

_DIGEST_SIZE = 32


class CachedEncoder(QueryEncoder):
    """Wrap an encoder with an on-disk embedding cache, so repeated queries cost nothing.

    Layout: ``cache_dir/<safe encoder id>-<fingerprint hash>/shard-<uuid>.safetensors``, each
    shard holding ``embeddings`` float32 ``[m, dim]`` and ``keys`` uint8 ``[m, 32]`` (SHA-256
    of the text). safetensors rather than pickle so that opening a cache cannot run code. Each
    encode call with misses appends one shard, written atomically, so concurrent writers never
    clash; unreadable shards are skipped with a warning. Shards are read on first use only.
    """

    def __init__(self, encoder: QueryEncoder, cache_dir: str | Path) -> None:
        self.encoder = encoder
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder.encoder_id.replace("/", "--"))
        digest = hashlib.sha256(encoder.fingerprint.encode("utf-8")).hexdigest()[:16]
        self.directory = Path(cache_dir) / f"{readable.strip('._-')[:80] or 'encoder'}-{digest}"
        self._entries: dict[bytes, torch.Tensor] | None = None

    @property
    def encoder_id(self) -> str:
        return self.encoder.encoder_id

    @property
    def revision(self) -> str | None:
        return self.encoder.revision

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @property
    def fingerprint(self) -> str:
        return self.encoder.fingerprint

    def _load_entries(self) -> dict[bytes, torch.Tensor]:
        if self._entries is not None:
            return self._entries
        entries: dict[bytes, torch.Tensor] = {}
        for shard in sorted(self.directory.glob("shard-*.safetensors")):
            try:
                tensors = load_file(shard)
                keys, embeddings = tensors["keys"], tensors["embeddings"]
                m = len(keys)
                found = (keys.dtype, tuple(keys.shape), embeddings.dtype, tuple(embeddings.shape))
                expected = (torch.uint8, (m, _DIGEST_SIZE), torch.float32, (m, self.dim))
                if found != expected:
                    msg = f"keys/embeddings (dtype, shape) must be {expected}, got {found}"
                    raise ValueError(msg)
            except (OSError, KeyError, TypeError, ValueError, SafetensorError) as exc:
                logger.warning("Ignoring unreadable embedding cache shard %s: %s", shard, exc)
                continue
            raw = keys.numpy().tobytes()
            for row in range(len(keys)):
                entries[raw[row * _DIGEST_SIZE : (row + 1) * _DIGEST_SIZE]] = embeddings[row]
        logger.debug("Loaded %d cached embeddings from %s", len(entries), self.directory)
        self._entries = entries
        return entries

    def _write_shard(self, keys: list[bytes], embeddings: torch.Tensor) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        key_tensor = torch.frombuffer(bytearray(b"".join(keys)), dtype=torch.uint8)
        name = f"shard-{uuid.uuid4().hex}.safetensors"
        tmp = self.directory / f".{name}.tmp"  # not matched by the shard glob while incomplete
        try:
            save_file(
                {"embeddings": embeddings, "keys": key_tensor.reshape(len(keys), _DIGEST_SIZE)},
                str(tmp),
                metadata={"encoder_id": self.encoder_id, "fingerprint": self.fingerprint},
            )
            os.replace(tmp, self.directory / name)
        finally:
            tmp.unlink(missing_ok=True)

    def _encode(self, texts: list[str], batch_size: int, show_progress: bool) -> torch.Tensor:
        entries = self._load_entries()
        keys = [text_hash(text) for text in texts]
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in entries:
                missing.setdefault(key, text)
        if missing:
            fresh = self.encoder.encode(list(missing.values()), batch_size, show_progress)
            fresh = fresh.to(torch.float32).contiguous()
            try:
                self._write_shard(list(missing), fresh)
            except OSError as exc:  # the cache is an optimisation: never fail encoding over it
                logger.warning("Could not write embedding cache shard: %s", exc)
            entries.update(zip(missing, fresh, strict=True))
        logger.debug("Embedding cache: %d hits, %d misses", len(texts) - len(missing), len(missing))
        return torch.stack([entries[key] for key in keys])
