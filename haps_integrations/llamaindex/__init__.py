"""LlamaIndex integration: `HAPSLLM` (an LLM for ``Settings.llm`` or any query engine) and
`HAPSSelector` (a selector for ``RouterQueryEngine`` whose choices are backends).

Both route with a HAPS router; `HAPSLLM` calls through `haps_core.dispatch.RoutedCaller`, the same
loop as the LangChain integration. Needs ``pip install "haps[llamaindex]"``.
"""

# ruff: noqa: E402  (the extra is checked before the submodules import the framework)
from haps_integrations import require_extra

require_extra("llama_index.core", __name__, "LlamaIndex (llama-index-core)", "llamaindex")

from haps_core.dispatch import COST_WEIGHT_KEY, MAX_COST_KEY, TARGET_MEAN_KEY
from haps_integrations.llamaindex.collect import collect_backend
from haps_integrations.llamaindex.llm import HAPSLLM
from haps_integrations.llamaindex.messages import apply_system_message, extract_query_text, message_text
from haps_integrations.llamaindex.params import MECHANISMS, apply_parameters
from haps_integrations.llamaindex.query import haps_decision
from haps_integrations.llamaindex.selector import HAPSSelector, HAPSSelectorResult

__all__ = [
    "COST_WEIGHT_KEY",
    "HAPSLLM",
    "MAX_COST_KEY",
    "MECHANISMS",
    "TARGET_MEAN_KEY",
    "HAPSSelector",
    "HAPSSelectorResult",
    "apply_parameters",
    "apply_system_message",
    "collect_backend",
    "extract_query_text",
    "haps_decision",
    "message_text",
]
