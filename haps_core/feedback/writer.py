"""The bounded background writer: records leave the call path through a queue to one thread.

A call only puts its record on a bounded queue; one daemon thread writes them in batches (one
transaction each). When the queue is full the store's `WriterPolicy` decides: drop (after a short
wait, counted and warned about), block, or raise; nothing is ever dropped silently. `flush`
waits until every queued record is written; `close` flushes and stops the thread, and runs at
interpreter exit for every writer still open. A failing store write is logged with the count
of records it lost and the thread goes on.
"""

import atexit
import logging
import queue
import threading
import weakref
from typing import Any

from haps_core.feedback.base import RecordQueueFullError, Store
from haps_core.feedback.record import DecisionRecord

logger = logging.getLogger(__name__)

_STOP = object()
_open_writers: "weakref.WeakSet[BackgroundWriter]" = weakref.WeakSet()


class BackgroundWriter:
    """Writes records to ``store`` from one background thread (see the module docstring).

    Attributes:
        dropped: records dropped because the queue was full (``when_full="drop"``).
        failed: records lost because the store raised while writing them.
        written: records written.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.policy = store.writer
        self.dropped = 0
        self.failed = 0
        self.written = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=self.policy.queue_size)
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"haps-records-{store.kind}", daemon=True)
        self._thread.start()
        _open_writers.add(self)

    def put(self, record: DecisionRecord) -> bool:
        """Queues ``record``; True when queued, False when dropped (the queue stayed full)."""
        if self._closed:
            logger.warning("record %s written directly: its writer is closed", record.decision_id)
            self.store.write([record])
            self.written += 1
            return True
        policy = self.policy
        try:
            if policy.when_full == "block":
                self._queue.put(record)
            elif policy.block_s:
                self._queue.put(record, timeout=policy.block_s)
            else:
                self._queue.put_nowait(record)
        except queue.Full:
            if policy.when_full == "raise":
                msg = (
                    f"the record queue of store {self.store.name} stayed full ({policy.queue_size} "
                    f"records) for {policy.block_s} s; record {record.decision_id} was not written"
                )
                raise RecordQueueFullError(msg) from None
            with self._lock:
                self.dropped += 1
                dropped = self.dropped
            if dropped == 1 or dropped % 100 == 0:
                logger.warning(
                    "HAPS record queue of store %s is full (%d records): dropped %d record(s) so far "
                    "(raise WriterPolicy.queue_size, or when_full='block')",
                    self.store.name,
                    policy.queue_size,
                    dropped,
                )
            return False
        return True

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while len(batch) < self.policy.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            records = [r for r in batch if r is not _STOP]
            if records:
                try:
                    self.store.write(records)
                    self.written += len(records)
                except Exception:
                    self.failed += len(records)
                    logger.exception("HAPS could not write %d record(s) to %s", len(records), self.store.name)
            for _ in batch:
                self._queue.task_done()
            if len(records) < len(batch):
                return

    def flush(self) -> None:
        """Waits until every record queued so far is written (or failed)."""
        if self._thread.is_alive():
            self._queue.join()

    def close(self, timeout: float = 30.0) -> None:
        """Writes what is queued, then stops the thread (idempotent); later puts write directly."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)
        if self.dropped or self.failed:
            logger.warning(
                "HAPS records for %s: %d written, %d dropped (queue full), %d failed",
                self.store.name,
                self.written,
                self.dropped,
                self.failed,
            )
        _open_writers.discard(self)


@atexit.register
def _close_all() -> None:  # flush what is queued before the interpreter exits
    for writer in list(_open_writers):
        try:
            writer.close()
        except Exception:
            logger.exception("HAPS could not flush the records of %s at exit", writer.store.name)
