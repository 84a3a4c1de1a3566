"""LangChain integration: `HAPSRunnable` (a Runnable) and `ChatHAPS` (a chat model).

Both route every call to a backend *and* its parameters, apply them the way that backend takes
them (`haps_integrations.langchain.params`), and call it through the shared retry/fallback loop
(`haps_core.dispatch.RoutedCaller`). Needs ``pip install "haps[langchain]"``.
"""

# ruff: noqa: E402  (the extra is checked before the submodules import the framework)
from haps_integrations import require_extra

require_extra("langchain_core", __name__, "LangChain (langchain-core)", "langchain")

from haps_core.dispatch import COST_WEIGHT_KEY, MAX_COST_KEY, TARGET_MEAN_KEY
from haps_integrations.langchain.chat_model import ChatHAPS
from haps_integrations.langchain.collect import collect_backend
from haps_integrations.langchain.feedback import HAPSFeedbackHandler
from haps_integrations.langchain.messages import apply_system_message, extract_query_text, to_messages
from haps_integrations.langchain.params import MECHANISMS
from haps_integrations.langchain.runnable import HAPSRunnable

__all__ = [
    "COST_WEIGHT_KEY",
    "MAX_COST_KEY",
    "MECHANISMS",
    "TARGET_MEAN_KEY",
    "ChatHAPS",
    "HAPSFeedbackHandler",
    "HAPSRunnable",
    "apply_system_message",
    "collect_backend",
    "extract_query_text",
    "to_messages",
]
