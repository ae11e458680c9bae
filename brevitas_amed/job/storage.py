"""The study's storage: SQLite in ``output_dir`` by default, any SQLAlchemy URL (PostgreSQL,
MySQL), or Optuna's journal file (``journal:PATH``). Many workers share a study through it.

RDB storages get Optuna's heartbeat: a trial whose worker died is failed once its heartbeat has
lapsed and its parameters are retried once. The journal storage has no heartbeat in Optuna: a
killed worker's trial stays RUNNING there (it is not counted as finished, and no one waits for it).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import sqlalchemy as sa

from brevitas_amed.job.recipe import Recipe, RecipeError
from hw_backends.cache import BUSY_TIMEOUT_MS

JOURNAL_PREFIX = "journal:"


def storage_url(recipe: Recipe, out: Path) -> str:
    """``search.storage``, or the SQLite file ``output_dir/study.db``."""
    return recipe.search.storage or f"sqlite:///{(out / 'study.db').resolve()}"


def journal_path(url: str) -> Path | None:
    """The file of a ``journal:PATH`` storage (``journal:///abs/path`` also works); ``None`` for a
    database URL."""
    if not url.startswith(JOURNAL_PREFIX):
        return None
    path = url[len(JOURNAL_PREFIX):]
    return Path(path[2:] if path.startswith("//") else path).expanduser()


def make_storage(recipe: Recipe, out: Path) -> optuna.storages.BaseStorage:
    """The study's storage, with Optuna's heartbeat where the storage has one (RDB): a trial whose
    worker is silent for twice ``search.heartbeat_s`` is failed by the next ``optimize`` of any
    worker and its parameters retried once."""
    url = storage_url(recipe, out)
    path = journal_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    beat = recipe.search.heartbeat_s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
        return optuna.storages.RDBStorage(url, heartbeat_interval=beat, grace_period=2 * beat,
                                          heartbeat_stale_trial_callback=retry,
                                          engine_kwargs=_engine_kwargs(url))


def _engine_kwargs(url: str) -> dict:
    """SQLite waits up to a minute for another worker's write lock, as the latency cache does,
    rather than the driver's 5 s; a ``?timeout=`` in the URL is kept. A write that gives up
    fails the worker (Optuna reports it as ``Should not reach.``), so the wait errs long."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and "timeout" not in parsed.query:
        return {"connect_args": {"timeout": BUSY_TIMEOUT_MS / 1000}}
    return {}


def settles(recipe: Recipe, out: Path) -> bool:
    """Whether this job's storage fails a dead worker's trials (an RDB storage), so that a worker
    can wait until no trial runs and then knows the study is final (:func:`has_heartbeat`)."""
    return journal_path(storage_url(recipe, out)) is None


def has_heartbeat(storage: optuna.storages.BaseStorage) -> bool:
    """Whether a dead worker's trials are ever failed in this storage (RDB: yes; journal: no)."""
    return isinstance(storage, optuna.storages.RDBStorage)


def check_storage(recipe: Recipe) -> None:
    """Fail before anything is written when ``search.storage`` is no usable storage.

    Raises:
        RecipeError: The URL does not parse or names a database driver that is not installed.
    """
    url = recipe.search.storage
    if url is None:
        return
    if url.startswith(JOURNAL_PREFIX):
        if not str(journal_path(url)).strip(". "):
            raise RecipeError(f"search.storage={url!r}: give the journal file, e.g. journal:runs/study.journal")
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecipeError(f"search.storage={url!r} is not a usable database URL ({first}); give an SQLAlchemy URL "
                          f"such as sqlite:////abs/path/study.db or postgresql+psycopg://user@host/db, journal:PATH for "
                          f"Optuna's journal file, or null for output_dir/study.db") from None
