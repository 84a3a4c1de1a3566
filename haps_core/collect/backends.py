"""Backends for `haps collect`: what each one costs, which settings are searched, and how it is called.

A `BackendSpec` is framework-free: its `call` takes ``(system_text | None, query, params)`` and
returns a `CallResult` with the text and the token usage the backend reported. The LangChain and
LlamaIndex adapters (`haps_integrations.*.collect`) build one from a chat model. The catalog of the
collected log (and of a router trained on it) is exactly `routing_space(specs)`.
"""

import itertools
import logging
import math
import runpy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haps_core.catalog import DEFAULT_PROMPT_STYLE, Action, Backend, ParamValue, RoutingSpace

logger = logging.getLogger(__name__)

CALL_OVERHEAD_TOKENS = 16
"""Tokens a chat template adds around the messages of one call (an upper-bound allowance)."""


@dataclass(frozen=True)
class CallResult:
    """One backend call: the output text and the usage the backend reported."""

    text: str
    input_tokens: float
    output_tokens: float
    latency_s: float = 0.0


CallFn = Callable[[str | None, str, Mapping[str, ParamValue]], CallResult]


def estimate_tokens(text: str) -> int:
    """A typical token count of `text` (about 4 characters per token)."""
    return math.ceil(len(text) / 4) if text else 0


def max_tokens_of(text: str) -> int:
    """An upper bound of the token count of `text`: a BPE token covers at least one byte."""
    return len(text.encode("utf-8"))


@dataclass(frozen=True)
class BackendSpec:
    """One backend to collect from.

    Args:
        name: the backend's name in the log and the router's catalog.
        call: ``call(system_text | None, query, params) -> CallResult``.
        input_price, output_price: USD per 1M tokens.
        grid: searched parameters other than the prompt style, e.g. ``{"temperature": [0.0, 0.7]}``.
        prompt_styles: style name -> system text; every style is searched (``{}``: the
            ``default`` style only, no system message). Only ``default`` may have an empty text.
        max_concurrency: calls in flight at once to this backend.
        rate_limit: at most this many calls per second (None: no limit).
        timeout_s: per-call timeout; a call past it is a transient failure.
        output_tokens_estimate: typical output tokens of one call (plans and dry runs).
        max_output_tokens: the most output tokens one call may bill (budget reservations).
    """

    name: str
    call: CallFn
    input_price: float = 0.0
    output_price: float = 0.0
    grid: Mapping[str, Sequence[ParamValue]] = field(default_factory=dict)
    prompt_styles: Mapping[str, str] = field(default_factory=dict)
    max_concurrency: int = 4
    rate_limit: float | None = None
    timeout_s: float = 120.0
    output_tokens_estimate: int = 256
    max_output_tokens: int = 1024

    def __post_init__(self) -> None:
        if not callable(self.call):
            msg = f"backend {self.name!r}: `call` must be callable, got {type(self.call).__name__}"
            raise TypeError(msg)
        if "prompt_style" in self.grid:
            msg = f"backend {self.name!r}: give prompt styles as `prompt_styles` (name -> system text)"
            raise ValueError(msg)
        for style, text in self.prompt_styles.items():
            if not isinstance(text, str) or (not text.strip() and style != DEFAULT_PROMPT_STYLE):
                msg = (
                    f"backend {self.name!r}: prompt style {style!r} has no system text (got {text!r}); "
                    f"every style but {DEFAULT_PROMPT_STYLE!r} needs one"
                )
                raise ValueError(msg)
        if not isinstance(self.max_concurrency, int) or self.max_concurrency < 1:
            msg = f"backend {self.name!r}: `max_concurrency` must be an integer >= 1, got {self.max_concurrency!r}"  # noqa: E501
            raise ValueError(msg)
        if self.rate_limit is not None and not self.rate_limit > 0:
            msg = f"backend {self.name!r}: `rate_limit` must be > 0 calls/s or None, got {self.rate_limit!r}"
            raise ValueError(msg)
        if not self.timeout_s > 0:
            msg = f"backend {self.name!r}: `timeout_s` must be > 0, got {self.timeout_s!r}"
            raise ValueError(msg)
        self.backend()  # validates name, prices and grid values

    @property
    def styles(self) -> dict[str, str]:
        return dict(self.prompt_styles) or {DEFAULT_PROMPT_STYLE: ""}

    def backend(self) -> Backend:
        grid = {k: tuple(v) for k, v in self.grid.items()}
        grid["prompt_style"] = tuple(self.styles)
        return Backend(self.name, self.input_price, self.output_price, tuple(grid.items()))

    def actions(self) -> list[Action]:
        grid = self.backend().parameters
        names = sorted(grid)
        return [
            Action(self.name, tuple(zip(names, values, strict=True)))
            for values in itertools.product(*(grid[n] for n in names))
        ]

    def system_text(self, action: Action) -> str | None:
        text = self.styles[action.prompt_style]
        return text or None

    def estimate_usd(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input_price + output_tokens * self.output_price) / 1e6


def adapter_spec(
    name: str,
    call: CallFn,
    model: Any,
    reaches: Callable[[str, ParamValue], bool],
    prices: tuple[float, float],
    grid: Mapping[str, Sequence[ParamValue]] | None,
    prompt_styles: Mapping[str, str] | None,
    options: Mapping[str, Any],
) -> BackendSpec:
    """The spec an integration adapter returns; ValueError for a grid parameter that
    ``reaches(param, value)`` says cannot reach `model`."""
    grid = dict(grid or {})
    for param, values in grid.items():
        if values and not reaches(param, next(iter(values))):
            msg = (
                f"backend {name!r}: parameter `{param}` cannot reach {type(model).__name__} (no field, "
                "configurable or generation kwarg of that name); drop it from the grid"
            )
            raise ValueError(msg)
    return BackendSpec(
        name,
        call,
        input_price=prices[0],
        output_price=prices[1],
        grid=grid,
        prompt_styles=dict(prompt_styles or {}),
        **options,
    )


def routing_space(specs: Sequence[BackendSpec]) -> RoutingSpace:
    """The catalog of a collection: every backend with its whole grid, and the styles' texts."""
    if not specs:
        msg = "`backends` is empty: give at least one backend"
        raise ValueError(msg)
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        msg = f"`backends` names these backends more than once: {dupes}"
        raise ValueError(msg)
    texts: dict[str, str] = {}
    for spec in specs:
        for style, text in spec.styles.items():
            if texts.setdefault(style, text) != text:
                msg = (
                    f"prompt style {style!r} has different system texts in different backends; "
                    "give each text its own style name"
                )
                raise ValueError(msg)
    actions = [a for s in specs for a in s.actions()]
    return RoutingSpace(tuple(s.backend() for s in specs), tuple(actions), tuple(texts.items()))


# -- loading a backends file -------------------------------------------------------------------


def _import(target: str) -> Any:
    import importlib

    module, _, attr = target.partition(":")
    if not attr:
        msg = f"`factory` must be 'module:attribute', got {target!r}"
        raise ValueError(msg)
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _from_mapping(entry: Mapping[str, Any], styles: Mapping[str, str], where: str) -> BackendSpec:
    """A spec from a YAML/dict entry: name, factory ('module:Class'), kwargs, prices, grid, ..."""
    known = {
        "name",
        "factory",
        "kwargs",
        "framework",
        "prices",
        "grid",
        "prompt_styles",
        "max_concurrency",
        "rate_limit",
        "timeout_s",
        "output_tokens_estimate",
        "max_output_tokens",
    }
    unknown = sorted(set(entry) - known)
    if unknown or "name" not in entry or "factory" not in entry:
        msg = (
            f"{where}: backend entry {dict(entry)!r} needs `name` and `factory`; "
            f"unknown keys {unknown}; allowed: {sorted(known)}"
        )
        raise ValueError(msg)
    chosen = entry.get("prompt_styles")
    if isinstance(chosen, list):  # names of styles defined at the top level
        missing = [s for s in chosen if s not in styles and s != DEFAULT_PROMPT_STYLE]
        if missing:
            msg = (
                f"{where}: backend {entry['name']!r} uses prompt styles without a text: {missing}; "
                "define them under `prompt_styles`"
            )
            raise ValueError(msg)
        chosen = {s: styles.get(s, "") for s in chosen}
    model = _import(str(entry["factory"]))(**dict(entry.get("kwargs") or {}))
    framework = entry.get("framework", "langchain")
    if framework not in ("langchain", "llamaindex"):
        msg = f"{where}: {entry['name']!r}: `framework` must be langchain or llamaindex, not {framework!r}"
        raise ValueError(msg)
    adapter = _import(f"haps_integrations.{framework}.collect:collect_backend")
    prices = entry.get("prices", (0.0, 0.0))
    extra = {
        k: entry[k]
        for k in ("max_concurrency", "rate_limit", "timeout_s", "output_tokens_estimate", "max_output_tokens")
        if k in entry
    }
    spec: BackendSpec = adapter(
        str(entry["name"]),
        model,
        prices=tuple(prices),
        grid=dict(entry.get("grid") or {}),
        prompt_styles=chosen if chosen is not None else dict(styles),
        **extra,
    )
    return spec


def _apply_grid(specs: list[BackendSpec], grid: Mapping[str, Any], where: str) -> list[BackendSpec]:
    from dataclasses import replace

    by_name = {s.name: s for s in specs}
    unknown = sorted(set(grid) - set(by_name))
    if unknown:
        msg = f"{where}: the grid names unknown backend(s) {unknown}; known: {sorted(by_name)}"
        raise ValueError(msg)
    out = []
    for spec in specs:
        params = dict(grid.get(spec.name) or {})
        styles = params.pop("prompt_styles", None)
        changes: dict[str, Any] = {"grid": {**spec.grid, **params}}
        if styles is not None:
            changes["prompt_styles"] = styles
        out.append(replace(spec, **changes) if spec.name in grid else spec)
    return out


def load_backends(path: str | Path) -> list[BackendSpec]:
    """Reads a backends file.

    * Python (``.py``): run with `runpy`; it defines ``BACKENDS`` (a list of `BackendSpec`), and
      optionally ``GRID`` (backend name -> parameters, overriding each backend's grid).
    * YAML (``.yaml``/``.yml``): ``prompt_styles`` (name -> system text), ``backends`` (entries
      with ``name``, ``factory: module:Class``, ``kwargs``, ``framework``, ``prices: [in, out]``,
      ``grid``, ``prompt_styles: [names]``: without it, every top-level style) and optionally
      ``grid`` as above.

    Raises:
        ValueError: an unknown backend in the grid, a style without a text, a bad entry.
    """
    path = Path(path)
    where = f"`backends` file {str(path)!r}"
    if not path.is_file():
        msg = f"{where} does not exist"
        raise FileNotFoundError(msg)
    if path.suffix == ".py":
        ns = runpy.run_path(str(path))
        if "BACKENDS" not in ns:
            msg = f"{where} defines no `BACKENDS` (a list of haps_core.collect.BackendSpec)"
            raise ValueError(msg)
        specs = list(ns["BACKENDS"])
        bad = [type(s).__name__ for s in specs if not isinstance(s, BackendSpec)]
        if bad:
            msg = f"{where}: `BACKENDS` must hold BackendSpec objects, found {sorted(set(bad))}"
            raise ValueError(msg)
        grid = ns.get("GRID") or {}
    elif path.suffix in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped]  # optional dependency
        except ImportError:
            msg = f"reading {where} needs PyYAML (pip install pyyaml), or write the backends in Python"
            raise ImportError(msg) from None
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, Mapping) or not isinstance(data.get("backends"), list):
            msg = f"{where} must hold a mapping with a `backends` list"
            raise ValueError(msg)
        styles = dict(data.get("prompt_styles") or {})
        for style, text in styles.items():
            if not isinstance(text, str) or (not text.strip() and style != DEFAULT_PROMPT_STYLE):
                msg = f"{where}: prompt style {style!r} has no system text (got {text!r})"
                raise ValueError(msg)
        specs = [_from_mapping(e, styles, where) for e in data["backends"]]
        grid = data.get("grid") or {}
    else:
        msg = f"{where} must be a Python (.py) or YAML (.yaml, .yml) file"
        raise ValueError(msg)
    specs = _apply_grid(specs, grid, where)
    routing_space(specs)  # duplicate names, conflicting style texts
    return specs
