"""The langchain-tests standard suites for ChatHAPS, with FAKE backends and a FAKE router.

The backends are langchain-core's own fakes (`GenericFakeChatModel`, `FakeListChatModel`) and
the router is `fake_router.FakeRouter` (rules, not a model): these suites check that ChatHAPS is
a well-behaved LangChain chat model, not the quality of any routing.

Besides the unit suite, the integration suite runs here too, offline: with fake backends it
exercises invoke/ainvoke/stream/astream/batch, stop sequences, conversations, stream events and
the per-call model override (``model=<backend>`` pins that backend). Capabilities HAPS does not
have (tool calling, structured output, usage metadata, multimodal inputs) are skipped by the
suite itself through its capability flags, not xfailed.
"""

import itertools

from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from haps_integrations.langchain import ChatHAPS
from tests.helpers.fake_router import FakeRouter


def _params() -> dict:
    return {
        "router": FakeRouter(),
        "backends": {
            "small": FakeListChatModel(responses=["Hello from the small model.", "Second small answer."]),
            "large": GenericFakeChatModel(messages=itertools.cycle(["Hello there, I am the large model."])),
        },
    }


class TestChatHAPSUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatHAPS]:
        return ChatHAPS

    @property
    def chat_model_params(self) -> dict:
        return _params()


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
