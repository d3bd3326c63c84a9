from __future__ import annotations

from collections.abc import Iterator

import pytest

from siyu.core.jobs import huey


@pytest.fixture(autouse=True)
def _empty_queue() -> Iterator[None]:
    huey.flush()
    yield
    huey.flush()


def drain(limit: int = 1000) -> list[str]:
    """Run every queued job in this process (the jobs a worker would run); their names."""
    ran = []
    for _ in range(limit):
        message = huey.dequeue()
        if message is None:
            return ran
        ran.append(message.name)
        huey.execute(message)
    raise AssertionError("the queue does not drain")


from tests.fakes.weixin import weixin, weixin_server  # noqa: E402, F401
