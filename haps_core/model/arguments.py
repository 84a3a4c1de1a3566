"""Checks of `HAPSRouter.route`'s arguments, with errors that name the argument and the value."""

from collections.abc import Sequence

from haps_core.decision import check_budget


def route_texts(texts: Sequence[str] | str, input_texts: Sequence[str] | None = None) -> list[str]:
    """The query texts as a list (a single string is one query); each must be non-blank text,
    and `input_texts`, when given, must have one text per query."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            msg = f"`texts[{i}]` must be a string, got {type(t).__name__}"
            raise TypeError(msg)
        if not t.strip():
            msg = f"`texts[{i}]` is empty or whitespace: there is nothing to route on"
            raise ValueError(msg)
    if input_texts is not None:
        if isinstance(input_texts, str) or len(input_texts) != len(texts):
            got = "a single string" if isinstance(input_texts, str) else f"{len(input_texts)} texts"
            msg = f"`input_texts` must be a list with one text per query ({len(texts)}), got {got}"
            raise ValueError(msg)
        for i, t in enumerate(input_texts):
            if not isinstance(t, str):
                msg = f"`input_texts[{i}]` must be a string, got {type(t).__name__}"
                raise TypeError(msg)
    return texts


def check_route_budgets(
    cost_weight: float | None,
    max_cost_per_query: float | None,
    target_mean_cost: float | None,
    has_cost: bool,
) -> None:
    """One cost knob at a time, budgets finite and > 0, and none on a router without cost."""
    if cost_weight is not None and target_mean_cost is not None:
        msg = "give either `cost_weight` or `target_mean_cost`, not both"
        raise ValueError(msg)
    for name, value in (("max_cost_per_query", max_cost_per_query), ("target_mean_cost", target_mean_cost)):
        if value is not None:
            check_budget(value, name)
            if not has_cost:
                msg = f"this router was trained on logs without cost: `{name}` cannot be applied"
                raise ValueError(msg)
