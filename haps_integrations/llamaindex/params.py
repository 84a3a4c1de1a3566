"""How a routed parameter reaches a LlamaIndex backend LLM (`apply_parameters`).

The mechanism used is recorded per call (``additional_kwargs["haps"]["applied"]``) and reported
for the whole pool by `HAPSLLM.check_backends`.
"""

import logging
from collections.abc import Mapping
from typing import Any

from haps_core.dispatch import Applied, copy_with_fields, set_temperature

logger = logging.getLogger(__name__)

MECHANISMS = ("generate_kwargs", "model_copy", "system_message", "prompt_prefix", "default", "not_applied")
"""Every mechanism name that ``applied`` and `HAPSLLM.check_backends` may report."""

DETAILS = {
    "generate_kwargs": "set in generate_kwargs of a per-call copy (HuggingFaceLLM ignores call kwargs)",
    "model_copy": "set on a per-call copy of the LLM (its pydantic field of that name)",
    "system_message": "sent as a system message (chat); put before the prompt in complete",
    "prompt_prefix": "put before the prompt (complete)",
    "default": "the default style: nothing is added",
    "not_applied": "no known way to pass it to this LLM: it does NOT reach the model",
}

# transformers ``generate`` arguments that HuggingFaceLLM passes through ``generate_kwargs``.
_GENERATE_PARAMS = ("temperature", "top_p", "top_k", "repetition_penalty")
# Field names an LLM may use for a catalog parameter, in order of preference.
_FIELD_NAMES = {
    "max_tokens": ("max_tokens", "max_new_tokens"),
    "max_new_tokens": ("max_new_tokens", "max_tokens"),
}


def _is_transformers_llm(llm: Any) -> bool:
    """A ``HuggingFaceLLM`` (checked by class name: the package is optional)."""
    names = {cls.__name__ for cls in type(llm).__mro__}
    return "HuggingFaceLLM" in names and isinstance(getattr(llm, "generate_kwargs", None), dict)


def apply_parameters(llm: Any, params: Mapping[str, Any]) -> Applied[Any]:
    """``llm`` with ``params`` applied (a copy when anything changes), and the mechanism per param.

    Never mutates ``llm``: the pool's LLMs are shared by concurrent calls.

    ===================  ==========================================================================
    ``generate_kwargs``  ``HuggingFaceLLM`` (local transformers): per-call keyword arguments are
                         IGNORED there, so HAPS calls a per-call copy whose ``generate_kwargs`` carry
                         the setting. Temperature 0 becomes greedy decoding (``do_sample=False``),
                         t > 0 becomes ``do_sample=True, temperature=t``.
    ``model_copy``       an LLM with a pydantic field of that name (``OpenAI.temperature``...): a
                         per-call copy, so the shared instance is never mutated.
    ``system_message``   the prompt style in ``chat``/``stream_chat``: its text is prepended as a
                         system message (or appended to the conversation's own system message).
    ``prompt_prefix``    the prompt style in ``complete``/``stream_complete``: its text is put before
                         the prompt, as LlamaIndex does with ``system_prompt``.
    ``default``          the default prompt style: nothing is added.
    ``not_applied``      no known route: the parameter does NOT reach the model (logged once).
    ===================  ==========================================================================
    """
    if not params:
        return Applied(llm)
    mechanisms: dict[str, str] = {}
    rest = dict(params)
    if _is_transformers_llm(llm):
        generate = dict(llm.generate_kwargs)
        for param, value in params.items():
            if param == "temperature":
                set_temperature(generate, value)
            elif param in _GENERATE_PARAMS:
                generate[param] = value
            else:
                continue
            mechanisms[param] = "generate_kwargs"
            del rest[param]
        if generate != llm.generate_kwargs:
            llm = llm.model_copy(update={"generate_kwargs": generate})
    llm, unset = copy_with_fields(llm, rest, lambda param: _FIELD_NAMES.get(param, (param,)))
    for param in rest:
        mechanisms[param] = "not_applied" if param in unset else "model_copy"
    return Applied(llm, mechanisms)
