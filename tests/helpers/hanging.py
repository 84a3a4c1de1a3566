"""FAKE backends' hangs on demand, shared by the LangChain and LlamaIndex echo fakes.

The first ``hang_calls`` calls hang for 30 s before answering: a sync call blocks its thread until
``release`` is set (a test sets it at the end, so a worker thread HAPS abandoned finishes
cleanly), an async one sleeps (and is cancelled by HAPS). ``started`` records every call's start.
"""

import asyncio
import threading
import time
from typing import Any

from pydantic import BaseModel, Field


class HangsOnDemand(BaseModel):
    """A pydantic mixin: ``hang_calls``, ``release``, ``started`` and the two ways to hang."""

    hang_calls: int = 0
    """The first this many calls hang before answering."""
    # typed Any so that pydantic keeps the very same objects when a copy is built from these fields
    release: Any = Field(default_factory=threading.Event)
    started: Any = Field(default_factory=list)

    def _hangs(self) -> bool:
        self.started.append(time.perf_counter())
        return len(self.started) <= self.hang_calls

    def _hang(self) -> None:
        if self._hangs():
            self.release.wait(30)

    async def _ahang(self) -> None:
        if self._hangs():
            await asyncio.sleep(30)
