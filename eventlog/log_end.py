"""Where a partition's log ends: its last complete line, read from the tail only.

Health, checkpoints, replay and the saved command side ask where the log ends
now; reading back from the end of the last segment answers that without
reading the segment whole, however long it is.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from ._exceptions import CorruptLog, LogUnavailable
from .segments import partition_dir, segment_bases, segment_path
from .settings import Settings
from .tail_scan import last_line

__all__ = ["log_end", "log_ends"]


def log_end(pdir: Path) -> int:
    """A partition's next offset, from the last complete line of its last segment.

    Reads the tail only (last_line), so health checks stay cheap however long the
    segment is.
    """
    bases = segment_bases(pdir)
    if not bases:
        return 0
    path = segment_path(pdir, bases[-1])
    try:
        with open(path, "rb") as f:
            found = last_line(f, f.seek(0, os.SEEK_END))
        if found is None:
            return bases[-1]  # the segment holds no complete line yet
        return int(orjson.loads(found[1])["offset"]) + 1
    except FileNotFoundError:
        return bases[-1]
    except OSError as e:
        raise LogUnavailable(f"cannot read the end of {path}: {e}") from e
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CorruptLog(str(path), 0, f"last line is not an event: {e}") from e


def log_ends(settings: Settings) -> dict[int, int]:
    """Each partition's next offset now."""
    return {p: log_end(partition_dir(settings.log_dir, p)) for p in range(settings.partitions)}
