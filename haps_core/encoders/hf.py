"""HFEncoder: any Hugging Face ``AutoModel`` (encoder or decoder LM) as a mean-pooled query encoder.

transformers is imported only when a model loads, so importing this module stays cheap.
"""

import json
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from haps_core.encoders.base import QueryEncoder, check_positive_int, check_texts, resolve_device

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

_MAX_LENGTH_CAP = 512
# Tokenizers without a known limit report int(1e30); anything above this is such a sentinel.
_SENTINEL_MAX_LENGTH = 1_000_000


class HFEncoder(QueryEncoder):
    """Any Hugging Face ``AutoModel`` (encoder or decoder LM) with mean pooling.

    ``tokenizer`` and ``model`` are public and :meth:`forward_features` keeps gradients, so a
    trainer can fine-tune the encoder end to end; :meth:`encode` is the fast inference path.

    Args:
        name_or_path: Hub name or local folder.
        device: See :func:`resolve_device`.
        revision: Hub revision to pin (ignored by transformers for local folders).
        max_length: Token limit; default is the model's own limit, at most 512 (a local
            ``sentence_bert_config.json`` ``max_seq_length`` wins, to match sentence-transformers).
        local_files_only: Forwarded to ``from_pretrained`` when not None.
        gguf_file: GGUF file inside ``name_or_path``; transformers dequantises it on load.
        dtype: Weight dtype; float32 by default so fine-tuning and CPU inference are stable.
        encoder_id: Overrides the id (defaults to ``str(name_or_path)``).
    """

    tokenizer: "PreTrainedTokenizerBase"
    # A transformers PreTrainedModel; an `OptimizedEncoder`'s is a quantised or compiled copy
    # (torch.compile gives an OptimizedModule), hence typed as any Module.
    model: nn.Module

    def __init__(
        self,
        name_or_path: str | os.PathLike[str],
        device: str | torch.device | None = "auto",
        revision: str | None = None,
        max_length: int | None = None,
        local_files_only: bool | None = None,
        gguf_file: str | None = None,
        dtype: torch.dtype = torch.float32,
        encoder_id: str | None = None,
    ) -> None:
        # Imported lazily: transformers is slow to import and only needed once a model loads.
        from transformers import AutoModel, AutoTokenizer

        if max_length is not None:
            check_positive_int("max_length", max_length)
        self._device = resolve_device(device)
        self._encoder_id = encoder_id or str(name_or_path)
        self._revision = revision
        self.gguf_file = gguf_file
        hub_kwargs: dict[str, Any] = {"revision": revision}
        if local_files_only is not None:
            hub_kwargs["local_files_only"] = local_files_only
        if gguf_file is not None:
            hub_kwargs["gguf_file"] = gguf_file
        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, **hub_kwargs)
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                msg = f"name_or_path={str(name_or_path)!r}: tokenizer has no pad or eos token"
                raise ValueError(msg)
            # Decoder LMs often ship without a pad token; pads are masked out of the mean anyway.
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # Right padding keeps real tokens at positions 0..n-1 in causal models, so a text gets
        # the same vector alone or in a padded batch.
        self.tokenizer.padding_side = "right"
        # A fast tokenizer keeps its truncation/padding settings as state that every call
        # rewrites: calls from several threads (one router serving a thread pool) must not
        # interleave, or one gets the other's settings (untruncated ids past max_length).
        self._tokenizer_lock = threading.Lock()
        self.model = AutoModel.from_pretrained(name_or_path, dtype=dtype, **hub_kwargs)
        self.model.to(self._device).eval()
        self.max_length = max_length or self._default_max_length(name_or_path)
        with torch.no_grad():  # warm-up: lazy CUDA/kernel init happens here, not on query one
            self._dim = int(self._encode_batch(["warm-up"]).shape[1])
        logger.info("Loaded encoder %s (dim=%d) on %s", self._encoder_id, self._dim, self._device)

    def __getstate__(self) -> dict[str, Any]:
        # copy.deepcopy (ablations copy a router with its encoder) cannot copy a lock
        state = self.__dict__.copy()
        state.pop("_tokenizer_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._tokenizer_lock = threading.Lock()

    def _default_max_length(self, name_or_path: str | os.PathLike[str]) -> int:
        st_config = Path(name_or_path) / "sentence_bert_config.json"
        if st_config.is_file():
            seq_len = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length")
            if isinstance(seq_len, int) and seq_len > 0:
                return min(seq_len, _MAX_LENGTH_CAP)
        limit = getattr(self.tokenizer, "model_max_length", None)
        if not isinstance(limit, int) or limit > _SENTINEL_MAX_LENGTH:
            limit = _MAX_LENGTH_CAP
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            limit = min(limit, positions)
        return min(limit, _MAX_LENGTH_CAP)

    @property
    def encoder_id(self) -> str:
        return self._encoder_id

    @property
    def revision(self) -> str | None:
        return self._revision

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def fingerprint(self) -> str:
        return f"{super().fingerprint}|max_length={self.max_length}|gguf={self.gguf_file}"

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise (pad, truncate) for :meth:`forward_features`; tensors are on ``device``."""
        items = check_texts(texts)
        if not items:
            msg = "texts must not be empty for tokenize"
            raise ValueError(msg)
        with self._tokenizer_lock:
            batch = self.tokenizer(
                items, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
        return {k: batch[k].to(self._device) for k in ("input_ids", "attention_mask")}

    def forward_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Mean-pooled, L2-normalised float32 ``[batch, dim]`` on ``device``, autograd intact.

        Neither disables gradients nor changes train/eval mode, so a routing loss can be
        back-propagated into the encoder.
        """
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        hidden = hidden.float()  # pool in float32 even for half-precision weights
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return F.normalize(pooled, p=2, dim=-1)

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenize(texts)
        return self.forward_features(batch["input_ids"], batch["attention_mask"])

    def _encode(self, texts: list[str], batch_size: int, show_progress: bool) -> torch.Tensor:
        with self._tokenizer_lock:
            encoded = self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]
        lengths = [len(ids) for ids in encoded]
        truncated = sum(length > self.max_length for length in lengths)
        if truncated:
            logger.warning(
                "%d of %d texts exceed max_length=%d tokens and were truncated",
                truncated,
                len(texts),
                self.max_length,
            )
        # Longest first: batches of similar length waste little compute on padding, and an
        # out-of-memory error surfaces on the first batch instead of the last.
        order = sorted(range(len(texts)), key=lengths.__getitem__, reverse=True)
        starts: Iterable[int] = range(0, len(order), batch_size)
        if show_progress:
            from tqdm.auto import tqdm  # type: ignore[import-untyped]  # tqdm ships no type hints

            starts = tqdm(starts, desc="Encoding", unit="batch")
        out = torch.empty((len(texts), self._dim), dtype=torch.float32)
        was_training = self.model.training
        if was_training:  # a trainer may have left the model in train mode (dropout); walking
            self.model.eval()  # the modules to set a mode costs ~0.3 ms, so only when needed
        try:
            with torch.no_grad():
                for start in starts:
                    index = order[start : start + batch_size]
                    out[torch.tensor(index)] = self._encode_batch([texts[i] for i in index]).cpu()
        finally:
            if was_training:
                self.model.train()
        return out
