"""The langchain-tests standard suites for ChatHAPS, with FAKE backends and a FAKE router.

The backends are langchain-core's own fakes (`GenericFakeChatModel`, `FakeListChatModel`) and
the router is `fake_router.FakeRouter` (rules, not a model): these suites check that ChatHAPS is
a well-behaved LangChain chat model, not the quality of any routing.

Besides the unit suite, the integration suite runs here too, offline: with fake backends it
exercises invoke/ainvoke/stream/astream/batch, stop sequences, conversations, stream events and
the per-call model override (``model=<backend>`` pins that backend). The first pair of classes
has a pool of backends that cannot call tools (langchain-core's list fakes), so tool calling and
structured output are off there; the ``Tools`` pair (issue 19) runs the same suites with them ON
over `tests.helpers.tool_fakes.ToolCallingFake` backends: FAKES that emit REAL tool calls (tool
schemas bound by their own ``bind_tools``, arguments built from those schemas by a fixed policy).
Usage metadata and multimodal inputs are skipped by the suites' own capability flags, not xfailed.
"""

import itertools

from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from haps_integrations.langchain import ChatHAPS
from tests.helpers.fake_router import FakeRouter
from tests.helpers.tool_fakes import ToolCallingFake


def _params() -> dict:
    return {
        "router": FakeRouter(),
        "backends": {
            "small": FakeListChatModel(responses=["Hello from the small model.", "Second small answer."]),
            "large": GenericFakeChatModel(messages=itertools.cycle(["Hello there, I am the large model."])),
        },
    }


def _tool_params() -> dict:
    return {
        "router": FakeRouter(),
        "backends": {"small": ToolCallingFake(tag="small"), "large": ToolCallingFake(tag="large")},
    }


class TestChatHAPSUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatHAPS]:
        return ChatHAPS

    @property
    def chat_model_params(self) -> dict:
        return _params()

    @property
    def has_tool_calling(self) -> bool:
        return False  # this pool's backends cannot call tools (see the Tools classes)

    @property
    def has_structured_output(self) -> bool:
        return False


class TestChatHAPSIntegrationOffline(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatHAPS]:
        return ChatHAPS

    @property
    def chat_model_params(self) -> dict:
        return _params()

    @property
    def returns_usage_metadata(self) -> bool:
        return False  # the fake backends report no token usage

    @property
    def model_override_value(self) -> str:
        return "small"  # `model=` names a backend: HAPS pins it

    @property
    def has_tool_calling(self) -> bool:
        return False  # this pool's backends cannot call tools (see the Tools classes)

    @property
    def has_structured_output(self) -> bool:
        return False


class TestChatHAPSToolsUnit(ChatModelUnitTests):
    """Issue 19: the unit suite with tool calling and structured output on (FAKE tool callers)."""

    @property
    def chat_model_class(self) -> type[ChatHAPS]:
        return ChatHAPS

    @property
    def chat_model_params(self) -> dict:
        return _tool_params()

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True


class TestChatHAPSToolsIntegrationOffline(ChatModelIntegrationTests):
    """Issue 19: the integration suite with tool calling, tool choice and structured output on,
    over FAKE backends that emit real tool calls (`ToolCallingFake`)."""

    @property
    def chat_model_class(self) -> type[ChatHAPS]:
        return ChatHAPS

    @property
    def chat_model_params(self) -> dict:
        return _tool_params()

    @property
    def returns_usage_metadata(self) -> bool:
        return False  # the fake backends report no token usage

    @property
    def model_override_value(self) -> str:
        return "small"

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True
