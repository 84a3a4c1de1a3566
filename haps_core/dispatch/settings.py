"""The settings an integration takes, checked once and declared once for both frameworks.

Each check names the setting, the bad value and what is allowed. The ``Annotated`` field types
carry those checks, and `RoutingSettings` declares the fields every integration shares with
them, so the LangChain and LlamaIndex classes validate nothing by hand.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SkipValidation,
    ValidationInfo,
    model_validator,
)
from tenacity import RetryCallState

from haps_core.decision import RouterLike, check_budget, check_cost_weight
from haps_core.exploration import check_exploration

T = TypeVar("T")

__all__ = [
    "Attempts",
    "CallTimeout",
    "CostWeight",
    "Costs",
    "MaxBackends",
    "MaxCost",
    "RetryPolicy",
    "RetryWait",
    "Router",
    "RoutingSettings",
    "TargetMeanCost",
    "check_attempts",
    "check_call_timeout",
    "check_max_backends",
    "check_one_cost_setting",
    "check_router",
]


def check_router(router: Any, needs: tuple[str, ...] = ("space", "route")) -> None:
    """Checks that ``router`` looks like a HAPS router (`RouterLike`): it has ``needs``.

    Raises:
        TypeError: an attribute is missing.
    """
    for attr in needs:
        if not hasattr(router, attr):
            if "route" in needs:
                shape = "`.space` and `.route(texts, cost_weight=..., max_cost_per_query=...)`"
            else:
                shape = "`.space` and `.predict(texts) -> (quality, cost)`"
            msg = f"`router` must have {shape} (a HAPSRouter); {type(router).__name__} has no `.{attr}`"
            raise TypeError(msg)


def check_max_backends(value: int | None) -> int | None:
    """Validates ``max_backends``: None (every backend of the decision) or an int >= 1."""
    if value is not None and (isinstance(value, bool) or value < 1):
        msg = f"`max_backends` must be None (every backend) or an int >= 1, got {value!r}"
        raise ValueError(msg)
    return value


def check_attempts(value: int, name: str = "max_attempts_per_backend") -> int:
    """Validates a number of calls per backend: an int >= 1 (``name`` is the setting's name)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"`{name}` must be an int >= 1, got {value!r}"
        raise ValueError(msg)
    return value


def check_call_timeout(value: float | None, name: str = "call_timeout") -> float | None:
    """Validates a per-attempt time limit: None (no limit) or a finite number of seconds > 0."""
    if value is None:
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value <= 0:
        msg = f"`{name}` must be None (no limit) or a finite number of seconds > 0, got {value!r}"
        raise ValueError(msg)
    return float(value)


def check_one_cost_setting(cost_weight: float | None, target_mean_cost: float | None) -> None:
    """Refuses an integration built with both a cost weight and a target mean cost."""
    if cost_weight is not None and target_mean_cost is not None:
        msg = (
            f"give either `cost_weight` ({cost_weight!r}) or `target_mean_cost` ({target_mean_cost!r}), "
            "not both: the router turns a target mean cost into a cost weight"
        )
        raise ValueError(msg)


def _named(check: Callable[[Any, str], T]) -> Callable[[Any, ValidationInfo], T]:
    """A pydantic after-validator that runs ``check(value, field name)``."""

    def validate(value: Any, info: ValidationInfo) -> T:
        return check(value, info.field_name or "value")

    return validate


def _optional_cost(value: float | None, name: str) -> float | None:
    return None if value is None else check_cost_weight(value, name)


def _optional_usd(value: float | None, name: str) -> float | None:
    return None if value is None else check_budget(check_cost_weight(value, name), name)


CostWeight = Annotated[float | None, AfterValidator(_named(_optional_cost))]
"""A cost weight (quality points per USD): None, or a finite number >= 0."""
MaxCost = Annotated[float | None, AfterValidator(_named(_optional_usd))]
"""A hard cap on one query's predicted cost: None, or a finite number of USD > 0."""
TargetMeanCost = Annotated[float | None, AfterValidator(_named(_optional_usd))]
"""A mean USD cost per query over the router's reference set: None, or a finite number > 0."""
MaxBackends = Annotated[int | None, AfterValidator(check_max_backends)]
"""How many distinct backends one call may try: None (every backend of the decision) or an int >= 1."""
Attempts = Annotated[int, AfterValidator(_named(check_attempts))]
"""Calls of one backend before falling back (transient errors only): an int >= 1."""
CallTimeout = Annotated[float | None, AfterValidator(_named(check_call_timeout))]
"""Seconds one backend call may take (a stream: until its first chunk); None: no limit."""
RetryWait = Callable[[RetryCallState], float] | None
"""A tenacity wait strategy between retries; None: `haps_core.dispatch.default_wait`."""
Router = Annotated[RouterLike, SkipValidation]
"""A HAPS router field: typed `RouterLike`, checked by `check_router` (a clear TypeError)."""


Costs = tuple[float | None, float | None, float | None]
"""One call's ``(cost weight, hard cap per query, target mean cost)`` (not weight and target both)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How one call retries and falls back (`RoutingSettings` ``max_attempts`` & co.)."""

    max_attempts: int = 3
    """Calls of one candidate before moving on (1 = no retry)."""
    max_backends: int | None = None
    """How many distinct backends to try at most (None: every backend of the decision)."""
    wait: RetryWait = None
    """tenacity wait strategy between retries (None: `default_wait`)."""
    call_timeout: float | None = None
    """Seconds one attempt may take (None: no limit)."""


class RoutingSettings(BaseModel):
    """The settings every HAPS integration takes, declared once with their checks and docs.

    `HAPSRunnable`, `ChatHAPS` and `HAPSLLM` inherit these fields (and add their own), so the
    same argument means the same thing, with the same error, in both frameworks.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    router: Router = Field(
        exclude=True,
        description="The HAPS router: `.space` and `.route(texts, cost_weight=..., max_cost_per_query=...)`.",
    )
    cost_weight: CostWeight = Field(
        default=None,
        description="Lambda: quality points per USD (>= 0); None: the router's `default_cost_weight`.",
    )
    max_cost_per_query: MaxCost = Field(
        default=None,
        description="Hard cap in USD on a query's predicted cost (the cheapest action where none fits).",
    )
    target_mean_cost: TargetMeanCost = Field(
        default=None,
        description="Mean USD cost per query over the router's reference set; calibrates the cost weight.",
    )
    prompt_styles: dict[str, str] | None = Field(
        default=None, description="Style name -> system-message text, overriding or extending the router's."
    )
    max_attempts: Attempts = Field(
        default=3, description="Calls of one backend before falling back (transient errors only)."
    )
    max_backends: MaxBackends = Field(
        default=None, description="Distinct backends to try per call (None: every backend of the decision)."
    )
    retry_wait: RetryWait = Field(
        default=None,
        exclude=True,
        description="tenacity wait strategy between retries (None: jittered exponential, 0.05 s to 2 s).",
    )
    call_timeout: CallTimeout = Field(
        default=None,
        description="Seconds one backend call may take (a stream: until its first chunk); None: no limit.",
    )
    exploration: Annotated[Any, AfterValidator(check_exploration)] = Field(
        default=None,
        exclude=True,
        description="An `haps_core.exploration.Exploration` (or a dict of its arguments): now and then "
        "serve a drawn action, its propensity in the record; None (default): always the greedy choice.",
    )

    @model_validator(mode="after")
    def _one_cost_setting(self) -> Self:
        check_one_cost_setting(self.cost_weight, self.target_mean_cost)
        return self

    def _retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts, self.max_backends, self.retry_wait, self.call_timeout)

    def _instance_costs(self) -> Costs:
        return self.cost_weight, self.max_cost_per_query, self.target_mean_cost
