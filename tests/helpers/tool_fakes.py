"""FAKE LangChain chat models that emit REAL tool calls (no model, no network).

`ToolCallingFake` is a `BaseChatModel` whose ``bind_tools`` converts the tools to OpenAI tool
schemas and binds them like a provider does (``tools=``, ``tool_choice=``); on a call it follows a
fixed, readable policy instead of a model:

* on a fresh user turn (no tool results since the last human message) with tools bound, it plans
  one tool call per tool named in the human text, in order of mention (the first tool when none
  is named); a forced ``tool_choice`` (``"any"``, ``"required"``, a name or a dict) always calls
  that tool;
* each model turn makes the next planned call; its arguments come from the tool's JSON schema:
  integers / numbers from the previous tool result when there is one, else the integers in the
  human text in order; strings from the text between single quotes, else the human text;
* when every planned call has a result, it answers ``"<tag>: <last tool result>"``; with no tools
  it answers ``"<tag>: <last human text>"``.

`PlainFake` is the same model without ``bind_tools`` (a backend that cannot call tools). Every call
is appended to the shared ``calls`` list (tag, the messages received, tool names bound); ``errors``
are raised one per call before answering.
"""

import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

_FORCED = ("any", "required", True)


def _text(message: BaseMessage) -> str:
    return message.content if isinstance(message.content, str) else message.text


def _value(spec: dict[str, Any], numbers: list[float], text: str) -> Any:
    kinds = [spec.get("type")] + [s.get("type") for s in spec.get("anyOf", [])]
    if "integer" in kinds or "number" in kinds:
        value = numbers.pop(0) if numbers else 0
        return int(value) if "integer" in kinds else float(value)
    if "string" in kinds:
        quoted = re.findall(r"'([^']+)'", text)
        return quoted[0] if quoted else text
    if "boolean" in kinds:
        return True
    return [] if "array" in kinds else {}


class PlainFake(BaseChatModel):
    """FAKE backend without tool calling: answers ``"<tag>: <last human text>"``."""

    tag: str
    calls: list[dict[str, Any]] = Field(default_factory=list)
    errors: list[Exception] = Field(default_factory=list)
    """Raised one per call (shared with per-call copies) before the model answers."""
    temperature: float | None = None

    @property
    def _llm_type(self) -> str:
        return "fake-tools"

    def _reply(self, messages: list[BaseMessage], tools: list[dict[str, Any]], choice: Any) -> AIMessage:
        human = next((_text(m) for m in reversed(messages) if isinstance(m, HumanMessage)), "")
        return AIMessage(content=f"{self.tag}: {human}")

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        tools = kwargs.get("tools") or []
        names = [t["function"]["name"] for t in tools]
        self.calls.append({"tag": self.tag, "messages": list(messages), "tools": names})
        if self.errors:
            raise self.errors.pop(0)
        message = self._reply(messages, tools, kwargs.get("tool_choice"))
        message.response_metadata["model_name"] = self.tag
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """The reply as a provider streams it: text, then one tool-call chunk per call."""
        message = self._generate(messages, stop, run_manager, **kwargs).generations[0].message
        yield ChatGenerationChunk(message=AIMessageChunk(content=message.content))
        for i, call in enumerate(getattr(message, "tool_calls", [])):
            chunk = {"name": call["name"], "args": json.dumps(call["args"]), "id": call["id"], "index": i}
            yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[chunk]))
        last = AIMessageChunk(content="", response_metadata={"model_name": self.tag}, chunk_position="last")
        yield ChatGenerationChunk(message=last)


class ToolCallingFake(PlainFake):
    """FAKE backend that emits real tool calls by the policy of the module docstring."""

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | Any],
        *,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def _reply(self, messages: list[BaseMessage], tools: list[dict[str, Any]], choice: Any) -> AIMessage:
        last_human = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
        human = _text(messages[last_human]) if last_human >= 0 else ""
        results = [m for m in messages[last_human + 1 :] if isinstance(m, ToolMessage)]
        by_name = {t["function"]["name"]: t["function"] for t in tools}
        forced = choice.get("function", {}).get("name") if isinstance(choice, dict) else choice
        if forced in by_name:
            plan = [forced]
        else:
            named = sorted((n for n in by_name if n in human), key=human.find)
            named = [n for n in named if not any(n != o and n in o and o in human for o in named)]
            plan = named or list(by_name)[:1]
        step = len(results)
        if not plan or (step >= len(plan) and forced not in (*_FORCED, *by_name)):
            last = _text(results[-1]) if results else human
            return AIMessage(content=f"{self.tag}: {last}")
        function = by_name[plan[min(step, len(plan) - 1)]]
        numbers = [float(results[-1].content)] if results and _is_number(results[-1].content) else []
        numbers += [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", human)]
        props = function.get("parameters", {}).get("properties", {})
        args = {name: _value(spec, numbers, human) for name, spec in props.items()}
        call = {
            "name": function["name"],
            "args": args,
            "id": f"call_{uuid.uuid4().hex[:8]}",
            "type": "tool_call",
        }
        return AIMessage(content="", tool_calls=[call])


def _is_number(content: Any) -> bool:
    try:
        float(json.loads(content) if isinstance(content, str) else content)
    except (TypeError, ValueError):
        return False
    return True
