"""The job queue: Huey on SQLite (embedded default) or Redis (``SIYU_REDIS_URL``).

Tasks take ids, re-read state and are safe to run twice. Send them after commit:
``after_commit(db, some_task, arg)``.
"""

from __future__ import annotations

from huey import Huey, RedisHuey, SqliteHuey

from siyu.core.settings import get_settings


def make_huey() -> Huey:
    s = get_settings()
    if s.redis_url:
        return RedisHuey(s.queue_name, url=s.redis_url, utc=True)
    s.var_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(s.queue_name, filename=str(s.var_dir / "jobs.db"), utc=True)


huey = make_huey()
# Poll an empty SQLite queue at most every 0.5 s (Huey's default backs off to 10 s): reminders
# must leave within a second of being queued. Redis dequeues block, so this costs nothing there.
CONSUMER_POLLING = {"initial_delay": 0.05, "backoff": 1.15, "max_delay": 0.5}


def load_tasks() -> None:
    """Import every domain's tasks so the consumer knows them, and configure the ORM's
    mappers now: left to the first query, that took ~1 s of the first job (the first
    reminder of a broadcast waited on it) or of a web process's first request."""
    from sqlalchemy.orm import configure_mappers

    import siyu.ledger.tasks  # noqa: F401
    import siyu.live.reminders  # noqa: F401  (registers the live_reservers message target)
    import siyu.messaging.tasks  # noqa: F401
    import siyu.orders.tasks  # noqa: F401
    import siyu.trials.tasks  # noqa: F401
    from siyu.models import import_all

    import_all()
    configure_mappers()


@huey.on_startup()  # type: ignore[untyped-decorator]
def _connect() -> None:
    """Each consumer thread opens its database connection before its first job (the engine,
    dialect and first connection took half a second of the first reminder's job)."""
    from siyu.core.db import get_engine

    with get_engine().connect():
        pass
