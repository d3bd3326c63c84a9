from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from huey.signals import SIGNAL_ERROR

from siyu.core.jobs import huey
from tests.fakes.weixin import weixin, weixin_server  # noqa: F401

_errors: list[tuple[str, Any]] = []


@huey.signal(SIGNAL_ERROR)  # type: ignore[misc]
def _record_error(signal: str, task: Any, exc: Any = None) -> None:
    _errors.append((task.name, exc))


@pytest.fixture(autouse=True)
def _empty_queue() -> Iterator[None]:
    huey.flush()
    yield
    huey.flush()


def drain(limit: int = 1000) -> list[str]:
    """Run every queued job in this process (the jobs a worker would run); their names.
    A job that fails fails the test (Huey itself would only log it)."""
    ran = []
    _errors.clear()
    for _ in range(limit):
        message = huey.dequeue()
        if message is None:
            assert not _errors, _errors
            return ran
        ran.append(message.name)
        huey.execute(message)
    raise AssertionError("the queue does not drain")
