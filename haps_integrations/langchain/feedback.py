"""`HAPSFeedbackHandler`: feedback on HAPS decisions through LangChain's callback system.

Passed in ``config={"callbacks": [handler]}``, the handler notes the ``decision_id`` of every
HAPS response that passes through a run (`HAPSRunnable` chain ends, `ChatHAPS` generations)
under that run's id and the ids of the runs around it, so feedback can name the run the
application knows (the outer chain's ``run_id``, as LangSmith feedback does) or the decision
itself. With a ``scorer``, each response is scored as it ends and the score sent as feedback.
"""

import logging
from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from haps_core.feedback import FeedbackEntry, Score

logger = logging.getLogger(__name__)


def _decision_id(output: Any) -> str | None:
    """The ``decision_id`` in a message's (or an LLMResult's first generation's) ``haps`` metadata."""
    generations = getattr(output, "generations", None)
    if generations:
        output = getattr(generations[0][0], "message", None) if generations[0] else None
    metadata = getattr(output, "response_metadata", None)
    haps = metadata.get("haps") if isinstance(metadata, Mapping) else None
    value = haps.get("decision_id") if isinstance(haps, Mapping) else None
    return value if isinstance(value, str) else None


class HAPSFeedbackHandler(BaseCallbackHandler):
    """Maps LangChain run ids to HAPS decision ids and passes feedback on to ``target``.

    Args:
        target: what takes the feedback: a `HAPSRunnable` or `ChatHAPS` made with ``store=``
            (anything with ``feedback(decision_id, score)``).
        scorer: optional; called on each HAPS response's text as its run ends (or with
            ``(text, record)`` when it takes two arguments), its result sent as feedback.
            The call then waits for its record to be written, so keep it cheap.

    Attributes:
        decision_ids: run id -> decision id, for every run a HAPS response ended in or under.
    """

    run_inline = True  # the mapping must be in place when the run returns

    def __init__(self, target: Any, scorer: Callable[..., Any] | None = None) -> None:
        if not callable(getattr(target, "feedback", None)):
            kind = type(target).__name__
            msg = f"`target` must have `feedback(decision_id, score)` (HAPSRunnable, ChatHAPS), got {kind}"
            raise TypeError(msg)
        if scorer is not None and not callable(scorer):
            msg = f"`scorer` must be callable or None, got {type(scorer).__name__}"
            raise TypeError(msg)
        self.target = target
        self.scorer = scorer
        self.decision_ids: dict[UUID, str] = {}
        self._parents: dict[UUID, UUID | None] = {}

    # -- run tree --------------------------------------------------------------------------
    def on_chain_start(
        self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._parents[run_id] = parent_run_id

    def on_chat_model_start(
        self,
        serialized: Any,
        messages: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._parents[run_id] = parent_run_id

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._note(outputs, run_id)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._note(response, run_id)

    def _note(self, output: Any, run_id: UUID) -> None:
        decision_id = _decision_id(output)
        if decision_id is None:
            return
        run: UUID | None = run_id
        while run is not None and run not in self.decision_ids:  # this run and those around it
            self.decision_ids[run] = decision_id
            run = self._parents.get(run)
        if self.scorer is not None:
            try:
                self.target.feedback(decision_id, self.scorer)
            except Exception:  # a scorer's failure must not fail the user's call
                logger.exception("HAPS scorer failed on decision %s", decision_id)

    # -- feedback --------------------------------------------------------------------------
    def decision_id(self, run_id: UUID | str) -> str:
        """The decision id of a run id (or a decision id, returned as is).

        Raises:
            KeyError: a run id this handler saw no HAPS response under.
        """
        if isinstance(run_id, str):  # a run id noted here, else taken as the decision id
            try:
                return self.decision_ids.get(UUID(run_id), run_id)
            except ValueError:
                return run_id
        if run_id not in self.decision_ids:
            noted = len(self.decision_ids)
            msg = f"run {run_id} ended in no HAPS response this handler saw ({noted} runs noted)"
            raise KeyError(msg)
        return self.decision_ids[run_id]

    def feedback(self, run_id: UUID | str, score: Score) -> FeedbackEntry:
        """Feedback for the HAPS decision of ``run_id`` (a LangChain run id or a decision id)."""
        entry: FeedbackEntry = self.target.feedback(self.decision_id(run_id), score)
        return entry
