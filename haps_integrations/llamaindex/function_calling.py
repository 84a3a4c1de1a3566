"""The function-calling half of `HAPSLLM`: ``chat_with_tools`` and its twins, tool-call parsing.

LlamaIndex agents (``FunctionAgent``, ``ReActAgent``'s function-calling cousins) call these; each
routes among the backends that can call tools (`haps_integrations.llamaindex.tools.tool_pool`)
and the backend that served a response parses its tool calls.
"""

import logging
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    MessageRole,
)
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.tools.types import BaseTool

from haps_integrations.llamaindex.tools import (
    ToolBoundLLM,
    amarked_stream,
    marked,
    marked_stream,
    tool_pool,
)

logger = logging.getLogger(__name__)


def _tool_options(verbose: bool, allow_parallel_tool_calls: bool, tool_required: bool) -> dict[str, Any]:
    """The ``with_tools`` options every ``*_chat_with_tools`` passes on to the backends."""
    return {
        "verbose": verbose,
        "allow_parallel_tool_calls": allow_parallel_tool_calls,
        "tool_required": tool_required,
    }


def _messages(
    user_msg: str | ChatMessage | None, chat_history: Sequence[ChatMessage] | None
) -> list[ChatMessage]:
    messages = list(chat_history or [])
    if isinstance(user_msg, str):
        messages.append(ChatMessage(role=MessageRole.USER, content=user_msg))
    elif user_msg is not None:
        messages.append(user_msg)
    return messages


class FunctionCallingRouting:
    """Mixed into `HAPSLLM` (which supplies ``router``, ``backends`` and the settings)."""

    router: Any
    backends: dict[str, Any]

    def with_tools(self, tools: Sequence["BaseTool"], **options: Any) -> Any:
        """This LLM (same router and settings) over the tool-capable backends, tools bound.

        Raises:
            ValueError: no backend can call tools (every backend and its capabilities named).
        """
        pool = tool_pool(self.router, self.backends)
        bound = {
            name: ToolBoundLLM(llm=llm, tools=list(tools), options=options) for name, llm in pool.items()
        }
        fields = {n: getattr(self, n) for n in self.model_fields_set if n not in ("router", "backends")}  # type: ignore[attr-defined]
        return type(self)(self.router, bound, **fields)  # type: ignore[call-arg]

    def _prepare_chat_with_tools(
        self,
        tools: Sequence["BaseTool"],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The messages of a tools call (each backend prepares its own request from them)."""
        return {"messages": _messages(user_msg, chat_history), **kwargs}

    def _bound(self, tools: Sequence["BaseTool"], options: dict[str, Any]) -> Any:
        return self.with_tools(tools, **options)

    def chat_with_tools(
        self,
        tools: Sequence["BaseTool"],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Routes among the tool-capable backends; the chosen one's ``chat_with_tools`` answers."""
        options = _tool_options(verbose, allow_parallel_tool_calls, tool_required)
        return marked(self._bound(tools, options).chat(_messages(user_msg, chat_history), **kwargs))

    async def achat_with_tools(
        self,
        tools: Sequence["BaseTool"],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Async `chat_with_tools`."""
        options = _tool_options(verbose, allow_parallel_tool_calls, tool_required)
        return marked(await self._bound(tools, options).achat(_messages(user_msg, chat_history), **kwargs))

    def stream_chat_with_tools(
        self,
        tools: Sequence["BaseTool"],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponseGen:
        """Streaming `chat_with_tools` (the fallback rules of ``stream_chat``)."""
        options = _tool_options(verbose, allow_parallel_tool_calls, tool_required)
        return marked_stream(
            self._bound(tools, options).stream_chat(_messages(user_msg, chat_history), **kwargs)
        )

    async def astream_chat_with_tools(
        self,
        tools: Sequence["BaseTool"],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponseAsyncGen:
        """Async streaming `chat_with_tools` (what ``FunctionAgent`` calls)."""
        options = _tool_options(verbose, allow_parallel_tool_calls, tool_required)
        llm = self._bound(tools, options)
        return amarked_stream(await llm.astream_chat(_messages(user_msg, chat_history), **kwargs))

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        """The tool calls of ``response``, parsed by the backend that served it."""
        record = (
            response.additional_kwargs.get("haps") or response.message.additional_kwargs.get("haps") or {}
        )
        name = (record.get("served_by") or {}).get("backend")
        if name not in self.backends:
            pool = sorted(self.backends)
            msg = f"the response has no HAPS record of a pool backend (served_by={name!r}; pool: {pool})"
            raise ValueError(msg)
        return self.backends[name].get_tool_calls_from_response(
            response, error_on_no_tool_call=error_on_no_tool_call, **kwargs
        )
