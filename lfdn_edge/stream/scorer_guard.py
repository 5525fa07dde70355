"""A scorer that can go away: the stream keeps its cameras running while a remote scorer (a Triton server,
Triton mode) is unreachable, and scores again once it answers.

A ``ConnectionError`` from a scoring call (what ``TritonScorer`` raises when the server is down, restarting,
or times out) marks the scorer unavailable: the batch's healthy frames get results with ``score`` None, every
camera gets a ``scorer_unavailable`` status record (once per outage, the error in its detail), and the next
call is tried after a backoff delay (``Backoff``: 0.5 s doubling to 10 s by default); frames in between are
not sent. The first call that succeeds gives ``scorer_back`` to every camera. Any other exception is a bug or
a bad input, and stops the stream as before. A local engine never raises ``ConnectionError``, so this changes
nothing for one.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable, Optional

from .reader import Backoff
from .records import Status

UNAVAILABLE, BACK = "scorer_unavailable", "scorer_back"
log = logging.getLogger("lfdn_edge.stream")


class ScorerGuard:
    """The scorer's availability: when to try it, and the status records of its outages.

    ``ready()`` before a call (False while a retry is not due yet), then ``failed(exc)`` or ``succeeded()``,
    each returning the status records to emit (empty but for an outage's start and end)."""

    def __init__(self, cameras: list[str], backoff: Optional[Backoff] = None, seed: Optional[int] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.cameras = list(cameras)
        self.backoff = backoff if backoff is not None else Backoff()
        self.rng = random.Random(seed)
        self.clock = clock
        self.down_since: Optional[float] = None
        self.next_try = 0.0
        self.attempt = 0           # failed calls in the current outage
        self.last_error = ""

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def ready(self) -> bool:
        return self.down_since is None or self.clock() >= self.next_try

    def failed(self, exc: BaseException) -> list[Status]:
        now = self.clock()
        first = self.down_since is None
        if first:
            self.down_since = now
            self.attempt = 0
        delay = self.backoff.delay(self.attempt, self.rng)
        self.attempt += 1
        self.next_try = now + delay
        self.last_error = str(exc).strip() or type(exc).__name__
        if not first:
            log.debug("scorer still unavailable (attempt %d): %s; retry in %.2f s", self.attempt, self.last_error,
                      delay)
            return []
        log.warning("scorer unavailable: %s; frames are not scored until it answers (retry in %.2f s)",
                    self.last_error, delay)
        t = time.time()
        return [Status(c, UNAVAILABLE, t, f"{self.last_error}; retry in {delay:.2f} s") for c in self.cameras]

    def succeeded(self) -> list[Status]:
        if self.down_since is None:
            return []
        gone = self.clock() - self.down_since
        self.down_since = None
        self.attempt = 0
        log.warning("scorer back after %.1f s", gone)
        t = time.time()
        return [Status(c, BACK, t, f"scoring again after {gone:.1f} s") for c in self.cameras]
