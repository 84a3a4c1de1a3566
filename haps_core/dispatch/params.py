"""How a routed parameter reaches a model: the rules both integrations share, and the report.

Temperature 0 is greedy decoding for transformers; a parameter goes on a per-call copy of a pydantic
model that has a field of that name; the report says, per backend and parameter, whether it gets
through. What is framework-specific (which models take ``generate_kwargs``...) stays in each.
"""

import logging
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from haps_core.catalog import RoutingSpace
from haps_core.dispatch.prompts import PROMPT_STYLE

logger = logging.getLogger(__name__)

B = TypeVar("B")

SAMPLING_ONLY = ("temperature", "top_p", "top_k")
"""transformers ``generate`` arguments that only matter when sampling (it warns about each one)."""


def set_temperature(generate_kwargs: MutableMapping[str, Any], temperature: float) -> None:
    """Puts a temperature into transformers ``generate`` keyword arguments, in place.

    transformers rejects ``do_sample=True`` with temperature 0, and 0 means greedy anyway: t > 0
    becomes ``do_sample=True, temperature=t``; t <= 0 becomes ``do_sample=False`` without the
    sampling-only arguments.
    """
    t = float(temperature)
    if t > 0:
        generate_kwargs.update(do_sample=True, temperature=t)
        return
    for key in SAMPLING_ONLY:
        generate_kwargs.pop(key, None)
    generate_kwargs["do_sample"] = False


def pydantic_field(model: Any, names: Sequence[str]) -> str | None:
    """The first field of pydantic ``model`` called (or aliased) one of ``names``, if any."""
    if not isinstance(model, BaseModel):
        return None
    fields = type(model).model_fields
    for name in names:
        if name in fields:
            return name
        for field_name, info in fields.items():
            if info.alias == name:
                return field_name
    return None


def copy_with_fields(
    model: B, params: Mapping[str, Any], names: Callable[[str], Sequence[str]] = lambda p: (p,)
) -> tuple[B, dict[str, Any]]:
    """``model`` with the ``params`` it has pydantic fields for set on a copy, and the rest.

    The shared instance is never mutated (concurrent calls use it): a per-call ``model_copy``.

    Args:
        model: the backend model.
        params: parameter -> value.
        names: parameter -> the field names that may carry it, in order of preference.

    Returns:
        ``(model or its copy, {parameter: value} of the params it has no field for)``.
    """
    update: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for param, value in params.items():
        name = pydantic_field(model, names(param))
        if name is None:
            rest[param] = value
        else:
            update[name] = value
    if update:
        model = model.model_copy(update=update)  # type: ignore[attr-defined]  # a BaseModel
    return model, rest


def parameter_report(
    space: RoutingSpace,
    apply: Callable[[str, dict[str, Any]], Mapping[str, str]],
    details: Mapping[str, str],
    pinned: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """How each parameter of each backend's grid reaches its model (the integrations' check).

    Args:
        space: the router's routing space (its backends and their parameter grids).
        apply: ``apply(backend_name, parameters) -> {parameter: mechanism}``: the mechanism the
            integration would use; called once per backend with a sample value of each
            parameter (the grid's last; `PROMPT_STYLE` excluded: it is a system message).
        details: mechanism -> a sentence that explains it.
        pinned: parameters the integration sets on every call (reported for every backend).

    Returns:
        ``{backend: {parameter: {"mechanism": ..., "reaches_model": bool, "detail": ...}}}``;
        ``reaches_model`` is False for the ``"not_applied"`` mechanism.
    """
    pinned = dict(pinned or {})
    report: dict[str, dict[str, dict[str, Any]]] = {}
    for backend in space.backends:
        grid = backend.parameters
        sample = {p: values[-1] for p, values in grid.items() if p != PROMPT_STYLE}
        sample.update(pinned)
        applied = apply(backend.name, sample)
        routes = {}
        for param in sorted(set(grid) | set(pinned)):
            mechanism = "system_message" if param == PROMPT_STYLE else applied[param]
            routes[param] = {
                "mechanism": mechanism,
                "reaches_model": mechanism != "not_applied",
                "detail": details[mechanism],
            }
        report[backend.name] = routes
    return report


_WARNED: set[tuple[tuple[str, str, tuple[str, ...]], ...]] = set()


def warn_unreachable(
    report: Mapping[str, Mapping[str, Mapping[str, Any]]], kinds: Mapping[str, str], check_name: str
) -> None:
    """Logs, in ONE line for the whole pool, the parameters that cannot reach their backend's model.

    Backends that lose the same parameters are named together (``'a', 'b' (FakeChat)``). Once
    per process for each such pool: integrations are rebuilt per call (LangChain's
    ``configurable_fields``, LlamaIndex's ``with_cost_weight``), and the warning would flood the logs.

    Args:
        report: a `parameter_report`.
        kinds: backend name -> the class name of its model (for the message).
        check_name: the integration's method that prints the report (for the message).
    """
    entries = []
    for backend, routes in report.items():
        lost = tuple(sorted(p for p, r in routes.items() if not r["reaches_model"]))
        if lost:
            entries.append((backend, kinds[backend], lost))
    key = tuple(entries)
    if not entries or key in _WARNED:
        return
    _WARNED.add(key)
    groups: dict[tuple[str, ...], list[str]] = {}
    for backend, kind, lost in entries:
        groups.setdefault(lost, []).append(f"{backend!r} ({kind})")
    parts = "; ".join(f"{list(lost)} on {', '.join(names)}" for lost, names in groups.items())
    logger.warning(
        "HAPS: parameters with no way to reach the model: %s; the router's choice of them will be "
        "ignored there (see %s())",
        parts,
        check_name,
    )
