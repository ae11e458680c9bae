"""Progress bars for the job's long steps.

A step takes a ``progress(total, desc)`` factory returning a context manager with ``update(n)``
and ``set_postfix_str(text)`` (a tqdm bar); :func:`no_progress` draws nothing (tests, ``-q``).
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Iterator, Protocol


class Bar(Protocol):
    def update(self, n: int = 1) -> object: ...

    def set_postfix_str(self, s: str = "") -> object: ...


Progress = Callable[[int, str], ContextManager[Bar]]


def tqdm_progress() -> Progress:
    """Bars on stderr that vanish when their step ends."""
    from tqdm.auto import tqdm

    def progress(total: int, desc: str):
        return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.5)

    return progress


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "") -> None:
        pass


@contextlib.contextmanager
def _silent_bar(total: int, desc: str) -> Iterator[Bar]:
    yield _Silent()


def no_progress() -> Progress:
    """A factory whose bars draw nothing."""
    return _silent_bar
