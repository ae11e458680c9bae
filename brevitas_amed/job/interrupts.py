"""Ctrl-C during a search, taken where it leaves the study consistent."""

from __future__ import annotations

import signal
import threading


class CtrlC:
    """SIGINT while the study runs, taken where it strands no trial: Optuna fails a trial whose
    objective raises KeyboardInterrupt, but one raised while it asks for a trial leaves that trial
    RUNNING, and one raised while it stores a result escapes as an UnboundLocalError. So a first
    Ctrl-C raises at once only in the objective; elsewhere it is noted and the search stops before
    the next trial. A second raises wherever it lands. An ignored or custom SIGINT handler, and a
    search off the main thread, are left alone."""

    def __init__(self) -> None:
        self.requested = self.in_objective = False
        self._previous = None

    def __enter__(self) -> "CtrlC":
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: object) -> None:
        again, self.requested = self.requested, True
        if again or self.in_objective:
            raise KeyboardInterrupt
