"""When a committer saves its command side, and starts from a saved one (state_file).

A save is a shortcut for the next start, never needed for correctness: whatever
fails here is logged and the partition is read whole instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .filelog import PartitionFile
from .records import StoredEvent
from .state import PartitionState
from .state_file import Mark, load_state, save_state

__all__ = ["SAVE_AFTER_READING", "SAVE_EVERY", "Saves"]

log = logging.getLogger("tradelog.writer")

SAVE_AFTER_READING = 10_000  # events read at once (another process's, or a start's)
SAVE_EVERY = 100_000  # events since the command side was last saved


class Saves:
    """One partition's saved command side: what the state holds beyond it, and its mark."""

    def __init__(self) -> None:
        self.loaded = False
        self._unsaved = 0  # events the state holds beyond the saved copy
        self._last_id = ""  # the last of them
        self._mark: Mark | None = None  # of the last save (or load): the next goes on from it
        self._long_read = False  # many events were read ahead: save at the next note

    def load(self, file: PartitionFile) -> PartitionState:
        """The saved state, `file` moved to where it ends; an empty one if there is none
        the log still holds."""
        self.loaded = True
        self._unsaved = 0
        self._long_read = False
        self._mark = None
        try:
            loaded = load_state(file.dir)
        except Exception:  # a shortcut only: whatever fails, read the partition whole
            log.exception("cannot load the saved command side of %s", file.dir)
            loaded = None
        if loaded is None:
            return PartitionState()
        self._mark, state = loaded
        file.restore(self._mark[0])
        return state

    def read_ahead(self, count: int, last_id: str) -> None:
        """Count events read before the next batch (a start's read ahead, checked under
        the lock): that batch's `note` saves at once if they were many."""
        self._last_id = last_id
        self._unsaved += count
        self._long_read = count >= SAVE_AFTER_READING

    def note(
        self,
        caught: Sequence[StoredEvent],
        written: Sequence[StoredEvent],
        file: PartitionFile,
        state: PartitionState,
    ) -> None:
        """Count a batch's events (read, then written); save if a save is due: at once
        after a long read (a start's, on a big log), else now and then."""
        last = written or caught
        if last:
            self._last_id = last[-1].id
        self._unsaved += len(caught) + len(written)
        long_read, self._long_read = self._long_read or len(caught) >= SAVE_AFTER_READING, False
        if self._unsaved and (long_read or self._unsaved >= SAVE_EVERY):
            self.save(file, state)

    def save(self, file: PartitionFile, state: PartitionState) -> None:
        """Save `state`, which holds every event before `file`'s position."""
        if not self._unsaved:
            return
        try:
            self._mark = save_state(file.dir, file.position(), self._last_id, state, self._mark)
        except Exception:  # a shortcut only: the next start reads more, nothing is lost
            log.exception("cannot save the command side of %s", file.dir)
            self._mark = None
        self._unsaved = 0
