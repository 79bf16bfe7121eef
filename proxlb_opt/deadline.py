"""One wall-clock deadline for a whole command, passed down the planning pipeline.

`time_limit` is the budget of the whole command from its start to the printed plan (reading a model
file included). The CLI creates one Deadline when the command starts; every stage takes a share of
what is *left* rather than of the original limit, so a slow first stage (a large model file) leaves
less to the search instead of pushing the end out. Re-solves after an unorderable sequence and every
point of `--pareto` draw on the same deadline.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Deadline:
    seconds: float  # the whole budget
    clock: Callable[[], float] = time.monotonic
    start: float = field(default=-1.0)

    def __post_init__(self) -> None:
        if not math.isfinite(self.seconds) or self.seconds <= 0:
            raise ValueError(f"a time limit must be a positive finite number of seconds, got {self.seconds!r}")
        if self.start < 0:
            self.start = self.clock()

    @property
    def end(self) -> float:
        return self.start + self.seconds

    def remaining(self) -> float:
        return max(0.0, self.end - self.clock())

    def elapsed(self) -> float:
        return self.clock() - self.start

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def share(self, fraction: float, at_least: float = 0.0, at_most: float = math.inf) -> float:
        """Seconds for a stage: `fraction` of what is left, clipped, never more than what is left."""
        left = self.remaining()
        return min(left, max(at_least, min(at_most, fraction * left)))

    def sub(self, seconds: float) -> "Deadline":
        """A deadline for one stage: `seconds` from now, but never past this one."""
        seconds = max(1e-3, min(seconds, self.remaining()))
        return Deadline(seconds=seconds, clock=self.clock)
