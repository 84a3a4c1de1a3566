"""Multi-turn routing: which turn of a conversation is routed, and stickiness within an agent run.

An agent run is one tool loop: the model answers a user turn with tool calls, the tools answer,
the model is called again with the results, and so on. Within a run the backend that started the
tool calls should finish them (another model may not read its tool-call format, and switching
mid-task wastes the context it built), so a call whose trailing messages continue such a loop is
*stuck* to the backend that served the loop's last model turn, as read from that turn's decision
record. The record then says which turn was routed and why the call stuck (or not).
"""

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from haps_core.decision import RoutingDecision, fallback_order

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Turn:
    """What an integration read from a conversation, framework-free.

    Attributes:
        user_turns: how many user messages the conversation holds (the routed one is the last).
        tool_calls: how many tool calls the model made in it so far.
        tool_results: how many tool results it holds.
        messages: how many messages it holds.
        context_chars: characters of everything sent (what the exact input cost is counted on).
        in_tool_loop: whether the trailing messages (after the last user message) are tool calls
            and results of one loop, i.e. this call continues an agent run.
        loop_backend: the backend that served the loop's last model turn (from its decision
            record), or None when unknown.
    """

    user_turns: int
    tool_calls: int
    tool_results: int
    messages: int
    context_chars: int
    in_tool_loop: bool
    loop_backend: str | None

    def features(self) -> dict[str, Any]:
        """The conversation features the decision record carries."""
        return {
            "user_turns": self.user_turns,
            "messages": self.messages,
            "tool_calls": self.tool_calls,
            "tool_results": self.tool_results,
            "context_chars": self.context_chars,
        }


def stick(decision: RoutingDecision, backend: str) -> RoutingDecision | None:
    """``decision`` with ``backend``'s best candidate first and every other candidate kept for
    fallback (so a failing backend is still fallen back from); None if it names no such action."""
    order = fallback_order(decision)
    same = [c for c in order if c.backend == backend]
    if not same:
        return None
    best = same[0]
    rest = tuple(c for c in order if c is not best)
    return RoutingDecision(
        backend,
        dict(best.parameters),
        best.predicted_quality,
        best.predicted_cost,
        decision.cost_weight,
        best.action_index,
        rest,
        decision.over_budget,
    )


def apply_stickiness(
    decision: RoutingDecision, turn: Turn, sticky: bool, pool: Collection[str]
) -> tuple[RoutingDecision, dict[str, Any]]:
    """The decision to call, and the ``turn`` entry of its record.

    ``turn`` entry: ``index`` (the routed user turn, 1-based), ``routed_on`` ("last_user_turn"),
    ``in_tool_loop``, ``sticky`` (whether the router's choice was replaced by the loop's backend),
    ``reason`` (why it stuck or not), the router's own ``router_backend`` and the conversation
    ``features``.
    """
    entry: dict[str, Any] = {
        "index": turn.user_turns,
        "routed_on": "last_user_turn",
        "in_tool_loop": turn.in_tool_loop,
        "router_backend": decision.backend,
        "features": turn.features(),
    }
    chosen, reason = decision, "new user turn: routed"
    if not turn.in_tool_loop:
        pass
    elif not sticky:
        reason = "in a tool loop, but sticky=False: routed"
    elif turn.loop_backend is None:
        reason = "in a tool loop, but its last model turn has no HAPS record: routed"
    elif turn.loop_backend not in pool:
        reason = f"in a tool loop served by {turn.loop_backend!r}, which is not in this pool: routed"
    elif (stuck := stick(decision, turn.loop_backend)) is None:
        reason = f"in a tool loop served by {turn.loop_backend!r}, which the decision lacks: routed"
    else:
        chosen = stuck
        reason = f"continues the tool loop served by {turn.loop_backend!r}"
    entry["sticky"] = chosen is not decision
    entry["reason"] = reason
    if chosen is not decision and chosen.backend != decision.backend:
        logger.debug("HAPS: tool loop stuck to %r (router chose %r)", chosen.backend, decision.backend)
    return chosen, entry
