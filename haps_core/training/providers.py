"""Where a training step gets the router's input features: frozen rows, or a tuned encoder."""

import abc
import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from haps_core.encoders import HFEncoder


class FeatureProvider(abc.ABC):
    """Where a training step gets the router's input features for a batch of queries."""

    @abc.abstractmethod
    def features(self, query_idx: np.ndarray, grad: bool) -> torch.Tensor:
        """Features [len(query_idx), input_dim]; with gradients to trainable parts if `grad`."""

    def param_groups(self) -> list[dict[str, Any]]:
        return []

    def snapshot(self) -> None:  # noqa: B027 - optional hook; frozen features have no state
        """Remembers the current trainable state (called at the best early-stopping epoch)."""

    def restore(self) -> None:  # noqa: B027 - optional hook
        """Restores the state remembered by `snapshot`."""


class FrozenFeatures(FeatureProvider):
    """Precomputed features of a frozen encoder: a row lookup."""

    def __init__(self, features: torch.Tensor) -> None:
        self._features = features

    def features(self, query_idx: np.ndarray, grad: bool) -> torch.Tensor:
        return self._features[query_idx]


class FineTunedEncoderFeatures(FeatureProvider):
    """Features from an encoder trained end to end with the routing objective.

    Each batch runs the encoder (with gradients in training steps) on the batch's texts; the
    structural features are fixed and concatenated. On CUDA the encoder runs under bf16
    autocast. The encoder's learning rate is small: it starts from a good sentence encoder and
    only a few hundred or thousand queries are there to move it.
    """

    def __init__(
        self,
        encoder: HFEncoder,
        texts: Sequence[str],
        structural: torch.Tensor | None,
        lr: float = 2e-5,
        batch_size: int = 64,
    ) -> None:
        self.encoder = encoder
        self.texts = list(texts)
        self.structural = structural
        self.lr = lr
        self.batch_size = batch_size
        self._state: dict[str, torch.Tensor] | None = None

    def _encode(self, idx: np.ndarray) -> torch.Tensor:
        tok = self.encoder.tokenize([self.texts[i] for i in idx])
        device = self.encoder.device
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            emb = self.encoder.forward_features(tok["input_ids"], tok["attention_mask"])
        emb = emb.float()
        if self.structural is not None:
            emb = torch.cat([emb, self.structural[idx].to(emb.device)], dim=1)
        return emb

    def features(self, query_idx: np.ndarray, grad: bool) -> torch.Tensor:
        model = self.encoder.model
        if grad:
            model.train()
            return self._encode(query_idx)
        model.eval()
        with torch.no_grad():
            parts = [
                self._encode(query_idx[i : i + self.batch_size])
                for i in range(0, len(query_idx), self.batch_size)
            ]
        return torch.cat(parts)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.encoder.model.parameters()), "lr": self.lr, "weight_decay": 0.0}]

    def snapshot(self) -> None:
        self._state = copy.deepcopy(self.encoder.model.state_dict())

    def restore(self) -> None:
        if self._state is not None:
            self.encoder.model.load_state_dict(self._state)
        self.encoder.model.eval()
