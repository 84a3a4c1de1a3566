"""The routing catalog: backends, their parameter grids, actions and the routing space.

A router chooses an *action*: one backend LLM together with concrete generation parameters
(temperature, prompt style, any further parameter the catalog declares). Everything that
outlives a process -- checkpoints, decision files, evaluation reports -- refers to actions by
their position in a `RoutingSpace`, so the space must be immutable, validated and have stable,
deterministic indices. All classes here are frozen and round-trip through plain JSON.
"""

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from haps_core.capabilities import Capabilities

logger = logging.getLogger(__name__)

ParamValue = str | float | int | bool
"""A concrete parameter value. Temperatures are floats, prompt styles are strings."""

DEFAULT_PROMPT_STYLE = "default"

# Built-in system-message texts for the prompt styles of common evaluation logs. Never applied on
# their own: a router gets them only when asked by name (`fit(prompt_styles="builtin")`,
# `haps train --prompt-styles builtin`) or when a caller passes them as `prompt_styles=`.
BUILTIN_PROMPT_STYLES_NAME = "builtin"
BUILTIN_PROMPT_STYLES: dict[str, str] = {
    "default": "",
    "answer_only": "Answer with the final answer only, without any explanation.",
    "cot": "Think step by step, then give the final answer on the last line.",
    "concise_cot": "Think step by step, but be concise. Then give the final answer on the last line.",
    "composite": (
        "You are an expert in the subject of the question. First recall the relevant knowledge, "
        "then think step by step, critique your reasoning, and give the final answer on the last "
        "line."
    ),
    "expert": "You are an expert in the subject of the question. Answer with the final answer only.",
    "self_recitation": "First recite the knowledge relevant to the question, then answer it.",
    "expert_concise_cot": (
        "You are an expert in the subject of the question. Think step by step. Be concise in your "
        "response but include any essential information. Give the final answer on the last line."
    ),
}
DEFAULT_PROMPT_STYLES = BUILTIN_PROMPT_STYLES  # the former name


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        msg = f"`{what}` must be a non-empty string, got {value!r}"
        raise ValueError(msg)
    return value


def _check_value(param: str, value: Any) -> ParamValue:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value):
            msg = f"parameter `{param}` must be finite, got {value!r}"
            raise ValueError(msg)
        if param == "temperature":
            if value < 0:
                msg = f"parameter `temperature` must be >= 0, got {value!r}"
                raise ValueError(msg)
            return float(value)
        return value
    msg = (
        f"parameter `{param}` has value {value!r} of type {type(value).__name__}; "
        "allowed: str, int, float or bool"
    )
    raise TypeError(msg)


def _sort_key(value: ParamValue) -> tuple[int, Any]:
    """Orders mixed-type parameter values deterministically (numbers before strings)."""
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int | float):
        return (1, float(value))
    return (2, str(value))


@dataclass(frozen=True)
class Backend:
    """One backend LLM: its price and the parameters it accepts.

    Args:
        name: the backend's name, as logs and integrations spell it.
        input_price: USD per 1M input tokens (0 when unknown).
        output_price: USD per 1M output tokens (0 when unknown).
        grid: the parameter grid, as ``((param, (value, ...)), ...)``: every value of every
            parameter the backend accepts. A backend that ignores temperature (a reasoning model,
            say) simply has no ``temperature`` entry.
        capabilities: what it supports (`Capabilities`; unknown by default, as old checkpoints).
    """

    name: str
    input_price: float = 0.0
    output_price: float = 0.0
    grid: tuple[tuple[str, tuple[ParamValue, ...]], ...] = ()
    capabilities: Capabilities = field(default_factory=Capabilities)

    def __post_init__(self) -> None:
        _check_name(self.name, "Backend.name")
        for what, price in (("input_price", self.input_price), ("output_price", self.output_price)):
            if not isinstance(price, int | float) or not math.isfinite(price) or price < 0:
                msg = f"`{what}` of backend {self.name!r} must be a finite number >= 0, got {price!r}"
                raise ValueError(msg)
        grid = []
        for param, values in sorted(dict(self.grid).items()):
            _check_name(param, "parameter name")
            checked = {_check_value(param, v) for v in values}
            if not checked:
                msg = f"parameter `{param}` of backend {self.name!r} has no values"
                raise ValueError(msg)
            grid.append((param, tuple(sorted(checked, key=_sort_key))))
        object.__setattr__(self, "grid", tuple(grid))

    @property
    def parameters(self) -> dict[str, tuple[ParamValue, ...]]:
        """The grid as a dict: parameter name -> allowed values."""
        return dict(self.grid)

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        """USD for one call with the given token counts."""
        return (input_tokens * self.input_price + output_tokens * self.output_price) / 1e6

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "input_price": self.input_price, "output_price": self.output_price}
        out["parameters"] = {k: list(v) for k, v in self.grid}
        if self.capabilities.known:  # only when declared: old catalogs serialise unchanged
            out["capabilities"] = self.capabilities.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Backend":
        params = data.get("parameters", {})
        return cls(
            name=data["name"],
            input_price=float(data.get("input_price", 0.0)),
            output_price=float(data.get("output_price", 0.0)),
            grid=tuple((k, tuple(v)) for k, v in params.items()),
            capabilities=Capabilities.from_dict(data.get("capabilities")),
        )


@dataclass(frozen=True, order=False)
class Action:
    """A backend plus concrete parameter values: the unit a router chooses."""

    backend: str
    params: tuple[tuple[str, ParamValue], ...] = ()

    def __post_init__(self) -> None:
        _check_name(self.backend, "Action.backend")
        items = dict(self.params)
        if len(items) != len(self.params):
            msg = f"action of backend {self.backend!r} repeats a parameter: {self.params!r}"
            raise ValueError(msg)
        checked = tuple(sorted((k, _check_value(k, v)) for k, v in items.items()))
        object.__setattr__(self, "params", checked)

    @classmethod
    def make(cls, backend: str, **params: ParamValue) -> "Action":
        """Builds an action from keyword parameters: ``Action.make("gpt-4", temperature=0.0)``."""
        return cls(backend, tuple(params.items()))

    @property
    def parameters(self) -> dict[str, ParamValue]:
        return dict(self.params)

    @property
    def temperature(self) -> float | None:
        value = self.parameters.get("temperature")
        return None if value is None else float(value)

    @property
    def prompt_style(self) -> str:
        return str(self.parameters.get("prompt_style", DEFAULT_PROMPT_STYLE))

    @property
    def key(self) -> str:
        """A readable, unique string id, e.g. ``gpt-4|prompt_style=cot|temperature=0.7``."""
        return "|".join([self.backend] + [f"{k}={v}" for k, v in self.params])

    def sort_key(self) -> tuple[Any, ...]:
        return (self.backend, tuple((k, _sort_key(v)) for k, v in self.params))

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "parameters": dict(self.params)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Action":
        return cls(data["backend"], tuple(dict(data.get("parameters", {})).items()))

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True)
class RoutingSpace:
    """The ordered set of actions a router chooses among, with their backends.

    Indices are stable: actions are sorted by backend name, then by parameter values, so the same
    set of actions always gets the same indices whatever order it was built in. Every action's
    parameter values must lie in its backend's grid.

    Args:
        backends: the backends, one per name.
        actions: the actions; their backends must be listed in ``backends``.
        prompt_styles: system-message text per prompt style name; a style the actions use
            without one has no text (recorded as null; the integrations refuse to serve it).
    """

    backends: tuple[Backend, ...]
    actions: tuple[Action, ...]
    prompt_styles: tuple[tuple[str, str], ...] = ()
    _index: dict[Action, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        names = [b.name for b in self.backends]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            msg = f"`backends` lists these names more than once: {dupes}"
            raise ValueError(msg)
        if not self.actions:
            msg = "`actions` is empty: a routing space needs at least one action"
            raise ValueError(msg)
        by_name = {b.name: b for b in self.backends}
        for action in self.actions:
            backend = by_name.get(action.backend)
            if backend is None:
                msg = (
                    f"action {action.key!r} names backend {action.backend!r}, which is not in "
                    f"`backends` (known: {sorted(by_name)})"
                )
                raise ValueError(msg)
            grid = backend.parameters
            for param, value in action.params:
                if param not in grid:
                    msg = (
                        f"action {action.key!r} sets parameter `{param}`, which backend "
                        f"{backend.name!r} does not declare (declared: {sorted(grid)})"
                    )
                    raise ValueError(msg)
                if value not in grid[param]:
                    msg = (
                        f"action {action.key!r} sets `{param}`={value!r}, outside backend "
                        f"{backend.name!r}'s grid {list(grid[param])}"
                    )
                    raise ValueError(msg)
        actions = tuple(sorted(set(self.actions), key=Action.sort_key))
        if len(actions) != len(self.actions):
            msg = "`actions` contains duplicates"
            raise ValueError(msg)
        styles = {}
        for name, text in self.prompt_styles:  # "" (but for "default"): the style has no text
            if not isinstance(text, str):
                msg = f"prompt style {name!r}: the system-message text must be a string, got {text!r}"
                raise ValueError(msg)
            if text.strip() or name == DEFAULT_PROMPT_STYLE:
                styles[name] = text
        if any(a.prompt_style == DEFAULT_PROMPT_STYLE for a in actions):
            styles.setdefault(DEFAULT_PROMPT_STYLE, "")
        object.__setattr__(self, "backends", tuple(sorted(self.backends, key=lambda b: b.name)))
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "prompt_styles", tuple(sorted(styles.items())))
        object.__setattr__(self, "_index", {a: i for i, a in enumerate(actions)})

    # -- lookup ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.actions)

    def __iter__(self):
        return iter(self.actions)

    @property
    def backend_names(self) -> list[str]:
        return [b.name for b in self.backends]

    def backend(self, name: str) -> Backend:
        for b in self.backends:
            if b.name == name:
                return b
        msg = f"unknown backend {name!r}; known: {self.backend_names}"
        raise KeyError(msg)

    def index(self, action: Action) -> int:
        try:
            return self._index[action]
        except KeyError:
            msg = f"action {action.key!r} is not in this routing space"
            raise KeyError(msg) from None

    def backend_index(self) -> list[int]:
        """For each action, the index of its backend in `backends`."""
        pos = {b.name: i for i, b in enumerate(self.backends)}
        return [pos[a.backend] for a in self.actions]

    def actions_of(self, backend: str) -> list[int]:
        self.backend(backend)
        return [i for i, a in enumerate(self.actions) if a.backend == backend]

    @property
    def parameter_names(self) -> list[str]:
        return sorted({p for b in self.backends for p, _ in b.grid})

    def prompt_style_text(self, style: str) -> str:
        styles = dict(self.prompt_styles)
        if style not in styles:
            msg = f"prompt style {style!r} has no system-message text; styles with one: {sorted(styles)}"
            raise KeyError(msg)
        return styles[style]

    @property
    def styles_without_text(self) -> list[str]:
        """Prompt styles the actions use that have no system-message text (recorded as null)."""
        return sorted({a.prompt_style for a in self.actions} - {n for n, _ in self.prompt_styles})

    def with_prompt_styles(self, texts: Mapping[str, str]) -> "RoutingSpace":
        """This space with ``texts`` (style name -> system text) for the styles its actions use."""
        used = {a.prompt_style for a in self.actions}
        styles = dict(self.prompt_styles) | {k: v for k, v in texts.items() if k in used}
        return RoutingSpace(self.backends, self.actions, tuple(styles.items()))

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_actions(
        cls,
        actions: Iterable[Action],
        prices: Mapping[str, tuple[float, float]] | None = None,
        prompt_styles: Mapping[str, str] | None = None,
    ) -> "RoutingSpace":
        """Infers backends and their grids from a set of actions (as found in logs).

        Args:
            actions: the observed actions.
            prices: optional backend name -> (input, output) USD per 1M tokens.
            prompt_styles: optional style name -> system-message text; other styles have none.
        """
        actions = sorted(set(actions), key=Action.sort_key)
        grids: dict[str, dict[str, set[ParamValue]]] = {}
        for a in actions:
            g = grids.setdefault(a.backend, {})
            for k, v in a.params:
                g.setdefault(k, set()).add(v)
        prices = prices or {}
        backends = tuple(
            Backend(
                name,
                *prices.get(name, (0.0, 0.0)),
                grid=tuple((k, tuple(v)) for k, v in grid.items()),
            )
            for name, grid in grids.items()
        )
        return cls(backends, tuple(actions), tuple((prompt_styles or {}).items()))

    def subset(self, indices: Sequence[int]) -> "RoutingSpace":
        """A space with only the given actions (and the backends they use)."""
        actions = [self.actions[i] for i in indices]
        used = {a.backend for a in actions}
        return RoutingSpace(
            tuple(b for b in self.backends if b.name in used), tuple(actions), self.prompt_styles
        )

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "backends": [b.to_dict() for b in self.backends],
            "actions": [a.to_dict() for a in self.actions],
            "prompt_styles": dict(self.prompt_styles) | dict.fromkeys(self.styles_without_text),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RoutingSpace":
        for key in ("backends", "actions"):
            if key not in data:
                msg = f"routing space JSON lacks the key `{key}` (found keys: {sorted(data)})"
                raise ValueError(msg)
        return cls(
            tuple(Backend.from_dict(b) for b in data["backends"]),
            tuple(Action.from_dict(a) for a in data["actions"]),
            tuple((k, v) for k, v in dict(data.get("prompt_styles", {})).items() if v is not None),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RoutingSpace":
        return cls.from_dict(json.loads(text))
