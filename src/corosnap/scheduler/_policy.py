"""What to do when a step fails: the retry policy of one registered function.

Pure functions of the options, an attempt number and a random source: no
clocks, no I/O, so they are tested exhaustively without waiting.

Rules
-----
* Attempt numbers start at 1; a function with ``retries=n`` runs at most
  ``n + 1`` attempts *per scheduler process* (attempt counts live in memory:
  after a crash a step in flight starts again at attempt 1; see
  docs/scheduler.md for why).
* An error is **permanent** (never retried) if it is a
  :class:`~corosnap.scheduler.PermanentError`, or an instance of one of the
  function's ``permanent`` classes, or, when ``transient`` is given, *not* an
  instance of one of those.  Everything else is **transient**.
  :class:`~corosnap.scheduler.StepTimeout`, the scheduler's own error, is
  transient unless listed in ``permanent``, whatever ``transient`` says.
* The pause before attempt ``k + 1`` is exponential with "equal jitter":
  ``d = min(max_backoff, backoff * 2 ** (k - 1))``, then a uniform draw from
  ``[d / 2, d]``.  Half the pause is guaranteed (the downstream service gets
  its rest), the other half spreads out the callers that failed together.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._errors import PermanentError, StepTimeout

ExceptionTypes = tuple[type[BaseException], ...]


@dataclass(frozen=True)
class FunctionOptions:
    """How the scheduler runs one step function.  Set through ``@sched.function(...)``."""

    fn: Callable[..., Any]
    name: str
    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 60.0
    jitter: bool = True
    timeout: float | None = None
    concurrency: int | None = None
    permanent: ExceptionTypes = ()
    transient: ExceptionTypes | None = None

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be an int >= 0, not {self.retries!r}")
        for field in ("backoff", "max_backoff"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
                raise ValueError(f"{field} must be a number >= 0, not {value!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout must be None or a number > 0, not {self.timeout!r}")
        if self.concurrency is not None and (
            isinstance(self.concurrency, bool)
            or not isinstance(self.concurrency, int)
            or self.concurrency < 1
        ):
            raise ValueError(f"concurrency must be None or an int >= 1, not {self.concurrency!r}")
        for field in ("permanent", "transient"):
            classes = getattr(self, field)
            if classes is None:
                continue
            if not all(isinstance(c, type) and issubclass(c, BaseException) for c in classes):
                raise TypeError(f"{field} must be a tuple of exception classes, not {classes!r}")

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def is_permanent(self, exc: BaseException) -> bool:
        """True if ``exc`` must not be retried (see the module docstring for the rule)."""
        if isinstance(exc, PermanentError) or isinstance(exc, self.permanent):
            return True
        if self.transient is None or isinstance(exc, StepTimeout):
            return False
        return not isinstance(exc, self.transient)

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """True if attempt number ``attempt`` failed with ``exc`` and another attempt is due."""
        return attempt < self.max_attempts and not self.is_permanent(exc)

    def retry_delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based) before the next."""
        # Cap the exponent before computing 2 ** n: a large attempt number
        # must not overflow a float on its way to being capped by max_backoff.
        exponent = min(attempt - 1, 64)
        delay = min(self.max_backoff, self.backoff * 2.0**exponent)
        if not self.jitter or delay == 0:
            return delay
        return (rng or random).uniform(delay / 2, delay)
