"""A round sent to its streams, its callers not answered yet (commit_loop.py).

The commit loop answers a round once the next one is staged: its stream
answers are read then, its partition locks let go (but those the next round
staged on, which stay held until that round is answered) and its callers
answered together. After a bug in a round, `recover` answers what can be
answered as it went and cuts off what cannot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .answers import Job, settle
from .committer import Committer, Staged
from .stream_copy import RoundAdds

__all__ = ["SentRound", "recover"]

log = logging.getLogger("tradelog.writer")


@dataclass(slots=True)
class SentRound:
    """A round synced (as the fsync policy says) whose stream adds are sent."""

    staged: list[tuple[Committer, Staged]]
    written: list[tuple[Committer, Staged]]
    adds: RoundAdds
    answers: list[tuple[Job, Any]]  # its failures, answered with it

    def answer(self, holding: set[int]) -> None:
        """Read the stream answers, let the locks go (but those of the committers in
        `holding`, by id: a later round staged on them) and answer the callers."""
        took = self.adds.took()
        in_stream = {part.p for (part, _), ok in zip(self.written, took, strict=True) if ok}
        answers = self.answers
        for part, s in self.staged:
            answers.extend(part.finish(s, part.p in in_stream, unlock=id(part) not in holding))
        settle(answers)

    def jobs(self) -> list[Job]:
        """Every command of the round, answered or not."""
        return [job for _, s in self.staged for job in s.batch] + [j for j, _ in self.answers]


def recover(
    error: Exception,
    staged: list[tuple[Committer, Staged]],
    before: SentRound | None,
    current: SentRound | None,
    unanswered: list[Job],
) -> None:
    """After a bug in a round (its fsyncs over): a round synced and sent to its streams
    (the round before, if still unanswered, or this one, `current`) is answered as it
    went. If this one was not sent, its lines (`staged`) are cut off again, as a failed
    sync's are, and its callers (`unanswered`) get the error."""
    if current is None:  # maybe not durable, not in the streams
        for part, _ in staged:
            part.fail(cut=True)
    for sent in (before, current):
        if sent is None:
            continue
        try:
            sent.answer(holding=set())
        except Exception as again:
            log.exception("cannot answer a round")
            for part, _ in sent.staged:
                part.fail()
            settle([(job, again) for job in sent.jobs()])
    if current is None:
        settle([(job, error) for job in unanswered])
