"""LlamaIndex integration: `HAPSLLM` (an LLM) and `HAPSSelector` (a selector).

* `HAPSLLM` is a LlamaIndex ``LLM`` for ``Settings.llm`` or any query engine: every call is
  routed to a backend LLM and its parameters (`haps_integrations.llamaindex.params`), with the
  retries and fallback of `haps_core.dispatch.RoutedCaller`, the same loop as the LangChain
  integration; the decision rides in ``additional_kwargs["haps"]``.
* `HAPSSelector` is a ``BaseSelector`` for ``RouterQueryEngine``: the choices are named after
  backends of the router's catalog, and the selection carries the chosen action's parameters
  (`HAPSSelectorResult`); ``RouterQueryEngine`` puts it in ``response.metadata["selector_result"]``.

Needs ``pip install "haps[llamaindex]"``.
"""

# ruff: noqa: E402  (the extra is checked before the submodules import the framework)
from haps_integrations import require_extra

require_extra("llama_index.core", __name__, "LlamaIndex (llama-index-core)", "llamaindex")

from haps_core.dispatch import COST_WEIGHT_KEY, MAX_COST_KEY
from haps_integrations.llamaindex.llm import HAPSLLM
from haps_integrations.llamaindex.messages import apply_system_message, extract_query_text, message_text
from haps_integrations.llamaindex.params import MECHANISMS, apply_parameters
from haps_integrations.llamaindex.selector import HAPSSelector, HAPSSelectorResult

__all__ = [
    "COST_WEIGHT_KEY",
    "HAPSLLM",
    "MAX_COST_KEY",
    "MECHANISMS",
    "HAPSSelector",
    "HAPSSelectorResult",
    "apply_parameters",
    "apply_system_message",
    "extract_query_text",
    "message_text",
]
