"""How a routed parameter reaches a LangChain backend, and the pool both classes build on.

Each parameter goes by the first mechanism the backend supports (`apply_parameters`); the one used
is recorded per call (``response_metadata["haps"]["applied"]``) and reported by `check_backends`.
"""

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import ConfigurableField, Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.config import patch_config
from langchain_core.runnables.configurable import RunnableConfigurableFields

from haps_core.decision import Alternative, RouterLike
from haps_core.dispatch import (
    Applied,
    Prepared,
    RoutedCaller,
    async_or_thread,
    copy_with_fields,
    set_temperature,
)
from haps_integrations.langchain.messages import restyle, sent_text

logger = logging.getLogger(__name__)

MECHANISMS = (
    "pipeline_kwargs",
    "configurable",
    "model_copy",
    "invoke_kwargs",
    "system_message",
    "default",
    "not_applied",
)
"""Every mechanism name that ``applied`` and `HAPSRunnable.check_backends` may report."""

DETAILS = {
    "pipeline_kwargs": "passed per call as pipeline_kwargs to the transformers pipeline",
    "configurable": "set per call through the backend's configurable field",
    "model_copy": "set on a per-call copy of the backend (its pydantic field of that name)",
    "invoke_kwargs": "passed as an invoke keyword argument (backend listed in forwards_kwargs)",
    "system_message": "sent as a system message",
    "default": "the default style: no system message is added",
    "not_applied": "no known way to pass it to this backend: it does NOT reach the model",
}

# Generation parameters that a transformers text-generation pipeline takes per call.
_PIPELINE_PARAMS = {
    "temperature": "temperature",
    "max_tokens": "max_new_tokens",
    "max_new_tokens": "max_new_tokens",
    "top_p": "top_p",
    "top_k": "top_k",
    "repetition_penalty": "repetition_penalty",
}


def _class_names(obj: Any) -> set[str]:
    return {cls.__name__ for cls in type(obj).__mro__}


def _is_hf_pipeline_chat(backend: Any) -> bool:
    """A ``ChatHuggingFace`` over a local ``HuggingFacePipeline`` (checked without importing it)."""
    return "ChatHuggingFace" in _class_names(backend) and "HuggingFacePipeline" in _class_names(
        getattr(backend, "llm", None)
    )


def apply_parameters(backend: Any, params: Mapping[str, Any], forwards_kwargs: bool) -> Applied[Any]:
    """``params`` applied to ``backend`` (a copy when anything changes), and the mechanism of each.

    Wrappers are looked through: a configurable backend takes what its fields name and passes the
    rest to the model inside; a bound one gets the parameters on the model it binds.

    =================  ============================================================================
    ``pipeline_kwargs``  ``ChatHuggingFace`` over a local ``HuggingFacePipeline``: the only per-call
                       route that reaches ``generate`` (its ``temperature`` field is ignored there).
                       Temperature 0 becomes greedy decoding (``do_sample=False``).
    ``configurable``   a backend made with ``.configurable_fields(temperature=ConfigurableField(...))``.
    ``model_copy``     a backend with a pydantic field of that name (``ChatOpenAI.temperature``):
                       a per-call copy, so the shared instance is never mutated.
    ``invoke_kwargs``  passed as invoke keyword arguments (like ``.bind``), only for the backends
                       listed in ``forwards_kwargs``: many chat models silently drop unknown kwargs.
    ``system_message`` the prompt style: its text is prepended as a system message (or appended to
                       the input's own system message).
    ``not_applied``    no known route: the parameter does NOT reach the model (logged at start-up).
    =================  ============================================================================
    """
    if not params:
        return Applied(backend)
    if _is_hf_pipeline_chat(backend):
        pipeline_kwargs: dict[str, Any] = {}
        mechanisms: dict[str, str] = {}
        for param, value in params.items():
            mechanisms[param] = "pipeline_kwargs" if param in _PIPELINE_PARAMS else "not_applied"
            if param == "temperature":
                set_temperature(pipeline_kwargs, value)
            elif param in _PIPELINE_PARAMS:
                pipeline_kwargs[_PIPELINE_PARAMS[param]] = value
        return Applied(backend, mechanisms, {"pipeline_kwargs": pipeline_kwargs} if pipeline_kwargs else {})
    if isinstance(backend, RunnableConfigurableFields):
        configurable, rest, mechanisms = {}, {}, {}
        for param, value in params.items():
            spec = backend.fields.get(param)
            if isinstance(spec, ConfigurableField):
                configurable[spec.id] = value
                mechanisms[param] = "configurable"
            else:
                rest[param] = value
        inner = apply_parameters(backend.default, rest, forwards_kwargs)
        if inner.backend is not backend.default:
            backend = backend.model_copy(update={"default": inner.backend})
        return Applied(
            backend, {**mechanisms, **inner.mechanisms}, inner.kwargs, {**configurable, **inner.configurable}
        )
    if isinstance(backend, RunnableBinding):
        inner = apply_parameters(backend.bound, params, forwards_kwargs)
        merged = merge_kwargs(backend.kwargs, inner.kwargs)  # e.g. our pipeline_kwargs into bound ones
        kwargs = {key: merged[key] for key in inner.kwargs}  # the binding adds its own other kwargs
        if inner.backend is not backend.bound:
            backend = backend.model_copy(update={"bound": inner.backend})
        return replace(inner, backend=backend, kwargs=kwargs)
    backend, rest = copy_with_fields(backend, params)
    mechanisms = {param: "model_copy" for param in params if param not in rest}
    for param in rest:
        mechanisms[param] = "invoke_kwargs" if forwards_kwargs else "not_applied"
    return Applied(backend, mechanisms, dict(rest) if forwards_kwargs else {})


def merge_kwargs(caller: Mapping[str, Any], haps: Mapping[str, Any]) -> dict[str, Any]:
    """The caller's invoke kwargs plus HAPS's; dict values (``pipeline_kwargs``) are merged."""
    merged = dict(caller)
    for key, value in haps.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def child_metadata(config: RunnableConfig, cand: Alternative, prepared: Prepared[Any, Any]) -> dict[str, Any]:
    """The metadata of one backend call: the caller's, plus what HAPS chose and applied."""
    return {
        **(config.get("metadata") or {}),
        "haps_backend": cand.backend,
        "haps_parameters": dict(cand.parameters),
        "haps_temperature": cand.temperature,
        "haps_prompt_style": cand.prompt_style,
        "haps_action_index": cand.action_index,
        "haps_attempt": prepared.attempt_number,
        "haps_applied": dict(prepared.applied),
    }


def langchain_caller(
    router: RouterLike,
    backends: Mapping[str, Any],
    prompt_styles: Mapping[str, str] | None,
    forwards_kwargs: Sequence[str],
    cost_names: tuple[str, ...],
    pinned: Mapping[str, Any] | None = None,
) -> RoutedCaller[Any, list[BaseMessage]]:
    """The `RoutedCaller` of `HAPSRunnable` and `ChatHAPS`: their pool of backends, checked.

    Raises:
        TypeError: a backend is not a Runnable, or the router is not a router.
        ValueError: the pool names a backend the router's catalog lacks, or ``forwards_kwargs`` names
            an unknown backend.
    """
    for name, backend in backends.items() if isinstance(backends, Mapping) else ():
        if not isinstance(backend, Runnable):
            msg = (
                f"`backends[{name!r}]` must be a LangChain chat model or Runnable, "
                f"got {type(backend).__name__}"
            )
            raise TypeError(msg)
    unknown = sorted(set(forwards_kwargs) - set(backends))
    if unknown:
        msg = f"`forwards_kwargs` names unknown backends {unknown}; backends: {sorted(backends)}"
        raise ValueError(msg)
    forwards = frozenset(forwards_kwargs)
    return RoutedCaller(
        router,
        backends,
        apply=lambda name, backend, params: apply_parameters(backend, params, name in forwards),
        restyle=restyle,
        prompt_styles=prompt_styles,
        pinned=pinned,
        cost_names=cost_names,
        details=DETAILS,
        labels=("a runnable", "runnables without a catalog entry"),
        sent_text=sent_text,
    )


# -- the one-line backend call ----------------------------------------------------------------
Configure = Callable[[Alternative, Prepared[Any, Any]], tuple[RunnableConfig, dict[str, Any]]]
"""``(candidate, prepared) -> (config, kwargs)`` of one backend call."""


def child_run(config: RunnableConfig, run_manager: Any, kwargs: Mapping[str, Any]) -> Configure:
    """`HAPSRunnable`'s backend calls: child runs of ``run_manager`` tagged ``haps:<backend>``."""

    def configure(cand: Alternative, prepared: Prepared[Any, Any]) -> tuple[RunnableConfig, dict[str, Any]]:
        child = patch_config(
            config,
            callbacks=run_manager.get_child(tag=f"haps:{cand.backend}"),
            configurable=prepared.configurable or None,
        )
        child["metadata"] = child_metadata(config, cand, prepared)
        return child, merge_kwargs(kwargs, prepared.kwargs)

    return configure


def leaf_call(stop: list[str] | None, kwargs: Mapping[str, Any]) -> Configure:
    """`ChatHAPS`'s backend calls: no callbacks (a chat-model run is a leaf), ``stop`` passed on."""

    def configure(cand: Alternative, prepared: Prepared[Any, Any]) -> tuple[RunnableConfig, dict[str, Any]]:
        config: RunnableConfig = {"callbacks": [], "metadata": child_metadata({}, cand, prepared)}
        if prepared.configurable:
            config["configurable"] = dict(prepared.configurable)
        call_kwargs = merge_kwargs(kwargs, prepared.kwargs)
        if stop is not None:
            call_kwargs["stop"] = stop
        return config, call_kwargs

    return configure


def sender(configure: Configure, method: str) -> Callable[[Alternative, Prepared[Any, Any]], Any]:
    """The backend call `RoutedCaller` makes: ``backend.<method>(messages, config, **kwargs)``."""

    def send(cand: Alternative, prepared: Prepared[Any, Any]) -> Any:
        config, kwargs = configure(cand, prepared)
        return getattr(prepared.backend, method)(prepared.input, config, **kwargs)

    return send


def async_sender(configure: Configure) -> Callable[[Alternative, Prepared[Any, Any]], Awaitable[Any]]:
    """The awaited backend call: ``ainvoke``, or ``invoke`` in a thread for a backend without one.

    (``ChatHuggingFace`` over a local pipeline has no async path: it raises NotImplementedError.)
    """

    async def send(cand: Alternative, prepared: Prepared[Any, Any]) -> Any:
        config, kwargs = configure(cand, prepared)
        backend, messages = prepared.backend, prepared.input
        return await async_or_thread(
            lambda: backend.ainvoke(messages, config, **kwargs),
            lambda: backend.invoke(messages, config, **kwargs),
        )

    return send
