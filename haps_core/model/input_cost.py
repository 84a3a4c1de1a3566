"""The input side of a call's cost: known before the call, so computed, not predicted.

A call's input tokens are the query (and any history) plus what the action adds (the prompt
style's system text, the chat template). Without each backend's tokenizer at hand, they come from
a linear model on additive counts of the text (characters, words, punctuation, digits, ..., and
the tokens of a real subword tokenizer, the bundled MiniLM's WordPiece), fitted per backend on the
logs' ``input_tokens`` with a per-action intercept for what the action adds. The counts add up
over concatenation, so a 200,000-token prompt costs what it costs, however little of it the
query encoder reads. Only the output side of the cost is left to the router's head.
"""

import logging
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from haps_core.catalog import RoutingSpace
from haps_core.charstats import char_stats, is_small_batch
from haps_core.text import replace_surrogates
from haps_core.wordpiece import wordpiece_flat

logger = logging.getLogger(__name__)

# What `text_counts` counts, in column order (stored in checkpoints: changing it is a new version).
TEXT_COUNTS = (
    "chars",
    "words",
    "word_runs",
    "punctuation",
    "digits",
    "newlines",
    "non_ascii",
    "uppercase",
    "digit_runs",
    "punctuation_runs",
    "long_word_excess",
    "very_long_word_excess",
    "short_words",
    "wordpieces",
)
# A backend's token model is fitted from this many rows with `input_tokens` at least.
MIN_ROWS = 10
# WordPiece tokens are counted on at most this many characters of a text (about 2 s of CPU), and
# scaled by characters beyond: a bounded cost on the request path for a prompt of any length.
WORDPIECE_CHARS = 4_000_000


def _wordpieces(texts: Sequence[str]) -> np.ndarray:
    heads = [replace_surrogates(t[:WORDPIECE_CHARS]) for t in texts]  # tokenizers refuse them
    n = wordpiece_flat(heads)[1].astype(np.float64)
    scale = np.array([len(t) / max(len(h), 1) for t, h in zip(texts, heads, strict=True)])
    return n * scale


_WORD_RUN = re.compile(r"\w+")
_PUNCT = re.compile(r"[^\w\s]")
_PUNCT_RUN = re.compile(r"[^\w\s]+")
_DIGIT = re.compile(r"\d")
_DIGIT_RUN = re.compile(r"\d+")
_UPPER = re.compile(r"[A-Z]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _counts_one(t: str) -> tuple[int, ...]:
    """One text's character counts (all but wordpieces) by their definitions: small batches."""
    lengths = [len(w) for w in _WORD_RUN.findall(t)]
    return (
        len(t),
        len(t.split()),
        len(lengths),
        len(_PUNCT.findall(t)),
        len(_DIGIT.findall(t)),
        t.count("\n"),
        len(_NON_ASCII.findall(t)),
        len(_UPPER.findall(t)),
        len(_DIGIT_RUN.findall(t)),
        len(_PUNCT_RUN.findall(t)),
        sum(max(n - 6, 0) for n in lengths),
        sum(max(n - 10, 0) for n in lengths),
        sum(n <= 3 for n in lengths),
    )


def text_counts(texts: Sequence[str]) -> np.ndarray:
    """[n, len(TEXT_COUNTS)] float64 counts of each text (each one additive over concatenation).

    The character counts come from one vectorised pass (`haps_core.charstats`) and equal the
    regular-expression counts their names say (``\\w+`` runs, ``[^\\w\\s]``, ``\\d``, ...).
    """
    out = np.zeros((len(texts), len(TEXT_COUNTS)), dtype=np.float64)
    if not len(texts):
        return out
    if is_small_batch(texts):
        out[:, :-1] = [_counts_one(t) for t in texts]
        out[:, -1] = _wordpieces(texts)
        return out
    st = char_stats(texts)
    columns = (
        st.chars,
        st.words,
        st.word_runs,
        st.punctuation,
        st.decimals,
        st.newlines,
        st.non_ascii,
        st.ascii_upper,
        st.decimal_runs,
        st.punctuation_runs,
        st.long_word_excess,
        st.very_long_word_excess,
        st.short_words,
    )
    out[:, :-1] = np.stack(columns, axis=1)
    out[:, -1] = _wordpieces(texts)
    return out


@dataclass
class InputTokenModel:
    """Input tokens of every action for a text: ``intercept[a] + counts @ coef[backend(a)]``.

    Attributes:
        intercept: [A] tokens each action adds to the text (system text, template).
        coef: [B, K] tokens per unit of each count, per backend (all >= 0).
        fitted: [B] whether the backend's tokens are modelled; a backend without input token
            counts in its logs (or without an input price) has its whole cost predicted by the
            router (its input cost is 0 here).
    """

    intercept: np.ndarray
    coef: np.ndarray
    fitted: np.ndarray
    # per catalog (held with it, compared by identity): each action's backend and input price
    _per_space: dict[int, tuple[RoutingSpace, np.ndarray, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def _arrays(self, space: RoutingSpace) -> tuple[np.ndarray, np.ndarray]:
        """Each action's backend index and input price (USD per 1M tokens) in `space`."""
        held = self._per_space.get(id(space))
        if held is None or held[0] is not space:
            backend_of = np.asarray(space.backend_index(), dtype=np.int64)
            prices = np.asarray([space.backends[b].input_price for b in backend_of.tolist()], dtype=float)
            held = (space, backend_of, prices)
            self._per_space[id(space)] = held
        return held[1], held[2]

    @classmethod
    def empty(cls, space: RoutingSpace) -> "InputTokenModel":
        """No backend modelled: the router predicts every action's whole cost (logs with `cost` only)."""
        n_b = len(space.backends)
        return cls(np.zeros(len(space)), np.zeros((n_b, len(TEXT_COUNTS))), np.zeros(n_b, dtype=bool))

    @property
    def active(self) -> bool:
        return bool(self.fitted.any())

    def tokens(self, space: RoutingSpace, counts: np.ndarray) -> np.ndarray:
        """[n, A] input tokens of each action for texts with these counts (0 for unmodelled backends)."""
        backend_of = self._arrays(space)[0]
        counts = np.asarray(counts, dtype=np.float64).reshape(-1, len(TEXT_COUNTS))
        per_backend = counts @ self.coef.T  # [n, B]
        tokens = self.intercept[None, :] + per_backend[:, backend_of]
        return np.where(self.fitted[backend_of][None, :], np.maximum(tokens, 0.0), 0.0)

    def cost(self, space: RoutingSpace, counts: np.ndarray) -> np.ndarray:
        """[n, A] USD of the input tokens of each action at the catalog's input prices."""
        return self.tokens(space, counts) * self._arrays(space)[1][None, :] / 1e6

    @classmethod
    def fit(
        cls,
        space: RoutingSpace,
        row_action: np.ndarray,
        row_counts: np.ndarray,
        row_input_tokens: np.ndarray,
    ) -> "InputTokenModel":
        """Least squares per backend (shared count weights, one intercept per action), with the
        count weights kept >= 0 so that a longer text never has fewer tokens.

        Args:
            space: the catalog.
            row_action: [n] action index of each log row.
            row_counts: [n, K] `text_counts` of each row's query text.
            row_input_tokens: [n] logged input tokens (NaN where the row has none).
        """
        model = cls.empty(space)
        backend_of = np.asarray(space.backend_index(), dtype=np.int64)
        has = np.isfinite(row_input_tokens)
        for b, backend in enumerate(space.backends):
            rows = np.flatnonzero(has & (backend_of[row_action] == b))
            if len(rows) < MIN_ROWS or backend.input_price <= 0:  # unpriced: the head predicts all
                continue
            actions = row_action[rows]
            coef, intercept = _fit_backend(actions, row_counts[rows], row_input_tokens[rows])
            model.coef[b] = coef
            for a, value in intercept.items():
                model.intercept[a] = value
            for a in space.actions_of(backend.name):  # actions never logged with tokens
                if a not in intercept:
                    model.intercept[a] = float(np.median(list(intercept.values())))
            model.fitted[b] = True
        return model


def _fit_backend(
    actions: np.ndarray, counts: np.ndarray, tokens: np.ndarray
) -> tuple[np.ndarray, dict[int, float]]:
    """Within-action least squares of tokens on counts, dropping any count whose weight comes out
    negative (an active-set non-negative fit) until every weight is >= 0."""
    uniq, inv = np.unique(actions, return_inverse=True)
    n_a = len(uniq)
    mean_x = np.zeros((n_a, counts.shape[1]))
    np.add.at(mean_x, inv, counts)
    size = np.bincount(inv, minlength=n_a).astype(np.float64)[:, None]
    mean_x /= size
    mean_y = np.bincount(inv, weights=tokens, minlength=n_a) / size[:, 0]
    xc, yc = counts - mean_x[inv], tokens - mean_y[inv]
    keep = np.ones(counts.shape[1], dtype=bool)
    coef = np.zeros(counts.shape[1])
    while keep.any():
        sol, *_ = np.linalg.lstsq(xc[:, keep], yc, rcond=None)
        if (sol >= 0).all():
            coef[:] = 0.0
            coef[keep] = sol
            break
        keep[np.flatnonzero(keep)[np.argmin(sol)]] = False
    intercept = mean_y - mean_x @ coef
    return coef, {int(a): float(v) for a, v in zip(uniq, intercept, strict=True)}


def set_input_buffers(router: Any, model: InputTokenModel) -> None:
    """Stores `model` in the router's (checkpointed) buffers ``input_intercept/coef/fitted``."""
    for name, value in (
        ("input_intercept", model.intercept),
        ("input_coef", model.coef),
        ("input_fitted", model.fitted.astype(np.float64)),
    ):
        router.register_buffer(name, torch.as_tensor(np.asarray(value, dtype=np.float64)).clone())


def input_model_of(router: Any) -> InputTokenModel:
    """The model in the router's buffers, rebuilt only when one of them changed (loading a
    checkpoint copies into them, which bumps their version)."""
    tensors = (router.input_intercept, router.input_coef, router.input_fitted)
    versions = tuple(t._version for t in tensors)
    # (tensors, versions, model): holding the tensors, an identity is never that of a new one
    held = router.__dict__.get("_input_model")
    if held is not None and held[1] == versions and all(map(operator.is_, held[0], tensors)):
        return held[2]
    model = InputTokenModel(
        router.input_intercept.double().cpu().numpy(),
        router.input_coef.double().cpu().numpy(),
        router.input_fitted.cpu().numpy() > 0.5,
    )
    router.__dict__["_input_model"] = (tensors, versions, model)
    return model


def check_input_counts(input_counts: np.ndarray | None, n_calls: int) -> np.ndarray:
    """`input_counts` when it gives the `text_counts` of each of `n_calls` calls, else a ValueError."""
    if input_counts is None or len(input_counts) != n_calls:
        got = "none" if input_counts is None else f"{len(input_counts)} rows"
        msg = (
            f"`input_counts` must give the text_counts of each of the {n_calls} calls "
            f"(this router prices input tokens from the text), got {got}"
        )
        raise ValueError(msg)
    return input_counts
