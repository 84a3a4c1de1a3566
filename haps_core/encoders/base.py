"""The query-encoder interface and the input checks every encoder shares.

Routing code only talks to :class:`QueryEncoder`, so the embedding model can be swapped without
touching it; :meth:`QueryEncoder.encode` validates input once for every implementation.
"""

import abc
import hashlib
import re
from collections.abc import Sequence

import torch

from haps_core.text import SURROGATE, replace_surrogates

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


def check_texts(texts: Sequence[str]) -> list[str]:
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


def check_positive_int(name: str, value: object) -> int:
    """``value`` if it is a positive int (not a bool), else a ValueError naming ``name``."""
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
        items = check_texts(texts)
        check_positive_int("batch_size", batch_size)
        if not items:
            return torch.empty((0, self.dim), dtype=torch.float32)
        return self._encode(items, batch_size, show_progress)

    @abc.abstractmethod
    def _encode(self, texts: list[str], batch_size: int, show_progress: bool) -> torch.Tensor:
        """Embed a non-empty validated list; same output contract as :meth:`encode`."""
