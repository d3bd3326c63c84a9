"""Fixed-window counters: how often something happened in the current window.

Shared by every process through Redis when ``SIYU_REDIS_URL`` is set (``INCR`` + ``EXPIRE``
on a key per window); otherwise kept in this process, which is the embedded default's one
web process. Windows follow ``siyu.core.clock`` so tests can move time.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

from siyu.core import clock
from siyu.core.settings import get_settings

_local: dict[str, int] = {}
_local_lock = threading.Lock()


@lru_cache(maxsize=4)
def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def _window(key: str, seconds: int) -> tuple[str, int]:
    """The key of the current window and the seconds until it ends."""
    now = int(clock.now().timestamp())
    start = now - now % seconds
    return f"{get_settings().queue_name}:rate:{key}:{start}", start + seconds - now


def count(key: str, *, seconds: int) -> tuple[int, int]:
    """Hits in the current window of ``key``, and the seconds until the window ends."""
    wkey, left = _window(key, seconds)
    url = get_settings().redis_url
    if url:
        return int(_redis(url).get(wkey) or 0), left
    with _local_lock:
        return _local.get(wkey, 0), left


def hit(key: str, *, seconds: int) -> int:
    """Count one more hit of ``key`` in the current window; the window's count after it."""
    wkey, _left = _window(key, seconds)
    url = get_settings().redis_url
    if url:
        pipe = _redis(url).pipeline()
        pipe.incr(wkey)
        pipe.expire(wkey, seconds + 60)
        n, _ok = pipe.execute()
        return int(n)
    with _local_lock:
        if len(_local) > 10_000:  # windows of keys long gone: drop them all but this one's
            current = _local.get(wkey, 0)
            _local.clear()
            _local[wkey] = current
        _local[wkey] = _local.get(wkey, 0) + 1
        return _local[wkey]


def reset() -> None:
    """Forget every window of this installation (tests start each case from zero)."""
    url = get_settings().redis_url
    if url:
        r = _redis(url)
        keys = list(r.scan_iter(match=f"{get_settings().queue_name}:rate:*", count=1000))
        if keys:
            r.delete(*keys)
    with _local_lock:
        _local.clear()
