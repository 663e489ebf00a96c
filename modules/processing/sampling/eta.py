"""How long a running job has left, from the pace of its steps.

A1111 divides the time since the job started by its progress (``elapsed / progress - elapsed``).
The first step pays for everything before the loop (loading the checkpoint, moving it to the
device, compiling kernels, encoding the prompt), often many times the later steps, so that
formula puts the early ETA off by 10x or more. Here the clock starts at the first completed
step: the pace is measured over the steps after it, and there is no estimate until a second
step is done. Time spent between batches (decoding, saving) falls between steps and so joins
the pace once a second batch has started.
"""

from __future__ import annotations

from modules.processing.jobs.job import ProgressUpdate

__all__ = ["remaining_s"]


def remaining_s(first: ProgressUpdate | None, latest: ProgressUpdate | None, elapsed_now: float) -> float | None:
    """Seconds left for the job, or None while there is no pace to go by.

    Args:
        first: the job's first progress update (the end of its first step).
        latest: its latest update; ``fraction`` is the share of all batches done.
        elapsed_now: the job's elapsed seconds now (on the clock of ``ProgressUpdate.elapsed_s``),
            so that the time since the latest update is taken off.
    """
    if first is None or latest is None:
        return None
    done = latest.fraction - first.fraction
    if done <= 0:  # one step seen (or a restarted count): nothing to measure a pace from
        return None
    spent = max(0.0, latest.elapsed_s - first.elapsed_s)
    left = (1.0 - latest.fraction) * spent / done
    return max(0.0, left - max(0.0, elapsed_now - latest.elapsed_s))
