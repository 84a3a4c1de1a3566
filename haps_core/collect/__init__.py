"""Collecting routing logs: run your questions over your backends and settings, on a budget.

`collect` (and `haps collect`) picks (question, action) cells with a strategy, calls the backends
(or replays a complete log), scores the outputs and writes a routing log in format v1 that
`haps_core.fit` trains on. The package is callable (``haps_core.collect(...)``), so the name
works whether it resolves to this package or to the function.
"""

import sys
import types
from typing import Any

from haps_core.collect.api import collect
from haps_core.collect.backends import BackendSpec, CallResult, load_backends, routing_space
from haps_core.collect.budget import Budget, BudgetError
from haps_core.collect.questions import Question, QuestionsError, load_questions
from haps_core.collect.registry import STRATEGIES
from haps_core.collect.replay import ReplayWorld
from haps_core.collect.report import CollectResult, Plan
from haps_core.collect.scorers import BUILTIN_SCORERS, get_scorer, llm_judge
from haps_core.collect.store import read_collected

__all__ = [
    "BUILTIN_SCORERS",
    "STRATEGIES",
    "BackendSpec",
    "Budget",
    "BudgetError",
    "CallResult",
    "CollectResult",
    "Plan",
    "Question",
    "QuestionsError",
    "ReplayWorld",
    "collect",
    "get_scorer",
    "llm_judge",
    "load_backends",
    "load_questions",
    "read_collected",
    "routing_space",
]


class _CallableModule(types.ModuleType):
    """Importing a submodule binds ``haps_core.collect`` to this package: calling it collects."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return collect(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
