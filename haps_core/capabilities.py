"""What a backend can do (tool calling, structured output, vision, context window).

A catalog entry may declare these; each is ``None`` when unknown (old checkpoints load so), and
the integrations fill unknown ones from the backend objects they are given. Only what is known is
written to checkpoint JSON, so a catalog without capabilities serialises as before.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

logger = logging.getLogger(__name__)

_FLAGS = ("tool_calling", "structured_output", "vision")


@dataclass(frozen=True)
class Capabilities:
    """A backend's capabilities; ``None`` means unknown.

    Args:
        tool_calling: whether it can be bound to tools and return tool calls.
        structured_output: whether it can return output in a given schema (JSON mode or tools).
        vision: whether it reads images.
        context_window: the most tokens (input + output) one call may hold.
    """

    tool_calling: bool | None = None
    structured_output: bool | None = None
    vision: bool | None = None
    context_window: int | None = None

    def __post_init__(self) -> None:
        for name in _FLAGS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                msg = f"capability `{name}` must be True, False or None (unknown), got {value!r}"
                raise TypeError(msg)
        window = self.context_window
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window <= 0):
            msg = f"capability `context_window` must be an int > 0 or None (unknown), got {window!r}"
            raise ValueError(msg)

    @property
    def known(self) -> bool:
        """Whether any capability is known."""
        return any(getattr(self, f.name) is not None for f in fields(self))

    def filled(self, other: "Capabilities") -> "Capabilities":
        """These capabilities, with the unknown ones taken from ``other``."""
        updates = {f.name: getattr(other, f.name) for f in fields(self) if getattr(self, f.name) is None}
        return replace(self, **updates)

    def to_dict(self) -> dict[str, Any]:
        """The known capabilities only (unknown ones are left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Capabilities":
        """From JSON; missing keys are unknown, an unknown key is an error naming the allowed ones."""
        data = dict(data or {})
        allowed = [f.name for f in fields(cls)]
        extra = sorted(set(data) - set(allowed))
        if extra:
            msg = f"backend `capabilities` has unknown keys {extra}; allowed: {allowed}"
            raise ValueError(msg)
        return cls(**data)
