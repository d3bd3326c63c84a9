"""The fair, verifiable draw (trials now; the lotteries of a later issue reuse it).

Published algorithm (docs/draw.md and the public page ``/draws/verify`` carry the same text),
so that anyone can re-run a draw in any language from the published data:

1. ``commitment`` = lower-case hex SHA-256 of the seed bytes. It is published when the
   campaign opens; the seed itself is revealed at the draw.
2. ``entries`` = the entry ids as strings, sorted by their UTF-8 bytes (duplicates removed).
3. A stream of unsigned 64-bit big-endian integers: block c (c = 0, 1, 2, …) is
   SHA-256(seed ‖ c as 8-byte big-endian), read as 4 integers (bytes 0–7, 8–15, 16–23,
   24–31).
4. ``uniform(m)`` takes the next integer x, rejects it while x ≥ ⌊2⁶⁴ / m⌋·m, and returns
   x mod m (no modulo bias).
5. For i = 0 … k−1 (k = min(winners, n)): j = i + uniform(n − i), swap entries i and j
   (a partial Fisher–Yates shuffle).
6. The winners are entries 0 … k−1, in that order.

Nothing here uses Python's ``random``. Python compares ``str`` by code point, which for
well-formed text is the same order as comparing UTF-8 bytes, so sorting the strings
directly (fast) gives the published order.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_TWO64 = 1 << 64
SEED_MIN_BYTES = 16
SEED_MAX_BYTES = 64


class DrawInputError(ValueError):
    """A seed or entry list the algorithm does not accept."""


def commitment(seed: bytes) -> str:
    """The published hash of the seed: lower-case hex SHA-256."""
    return hashlib.sha256(seed).hexdigest()


def parse_seed(seed_hex: str) -> bytes:
    """Seed bytes from hex (16–64 bytes). Raises DrawInputError."""
    text = (seed_hex or "").strip().lower()
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise DrawInputError("the seed must be hexadecimal") from None
    if not SEED_MIN_BYTES <= len(seed) <= SEED_MAX_BYTES:
        raise DrawInputError(
            f"the seed must be {SEED_MIN_BYTES}–{SEED_MAX_BYTES} bytes "
            f"({2 * SEED_MIN_BYTES}–{2 * SEED_MAX_BYTES} hex digits)"
        )
    return seed


def sorted_entries(entries: Iterable[str]) -> list[str]:
    """Entry ids in the published order: sorted by UTF-8 bytes, duplicates removed."""
    out = sorted(set(entries))
    # Passes in C over the joined text instead of a Python loop over a million ids.
    text = "\x00".join(out)
    if out and (not out[0] or "\n" in text or "\r" in text):
        raise DrawInputError("entry ids are non-empty and contain no line breaks")
    return out


_BLOCK = struct.Struct(">4Q")
_COUNTER = struct.Struct(">Q")
_BATCH = 1024  # digests computed per refill of the integer buffer


def _blocks(seed: bytes, first: int, count: int) -> list[int]:
    """The integers of digests ``first`` … ``first + count − 1``, in stream order."""
    sha256, pack = hashlib.sha256, _COUNTER.pack
    data = b"".join(sha256(seed + pack(c)).digest() for c in range(first, first + count))
    return list(struct.unpack(f">{4 * count}Q", data))


def stream(seed: bytes) -> Iterator[int]:
    """Unsigned 64-bit big-endian integers from SHA-256(seed ‖ counter)."""
    counter = 0
    while True:
        yield from _BLOCK.unpack(hashlib.sha256(seed + _COUNTER.pack(counter)).digest())
        counter += 1


def _uniform(ints: Iterator[int], m: int) -> int:
    limit = (_TWO64 // m) * m
    x = next(ints)
    while x >= limit:
        x = next(ints)
    return x % m


def winners(seed: bytes, entries: Iterable[str], k: int) -> list[str]:
    """The k winners (fewer if there are fewer entries), in draw order."""
    return _draw(seed, sorted_entries(entries), k)


def _draw(seed: bytes, pool: list[str], k: int) -> list[str]:
    """The partial Fisher–Yates over ``pool`` (already in the published order; shuffled).

    The same steps as ``stream`` and ``_uniform`` (the tests hold them equal), inlined with the
    integers read a batch of digests at a time: a million-winner draw runs in one loop."""
    if k < 0:
        raise DrawInputError("the number of winners cannot be negative")
    n = len(pool)
    k = min(k, n)
    buf: list[int] = []
    pos, counter = 0, 0
    two64 = _TWO64
    for i in range(k):
        m = n - i
        limit = (two64 // m) * m
        while True:
            if pos == len(buf):
                batch = min(_BATCH, (k - i) // 4 + 1)
                buf, pos = _blocks(seed, counter, batch), 0
                counter += batch
            x = buf[pos]
            pos += 1
            if x < limit:
                break
        j = i + x % m
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:k]


@dataclass(frozen=True)
class Verification:
    commitment: str
    winners: list[str]
    entries: int


def verify(seed_hex: str, entries: Iterable[str], k: int) -> Verification:
    """Re-run a draw from published data: the seed (hex), the entry ids and k."""
    seed = parse_seed(seed_hex)
    pool = sorted_entries(entries)
    n = len(pool)
    return Verification(commitment(seed), _draw(seed, pool, k), n)


def read_entries(text: str) -> list[str]:
    """Entry ids from a file's text: one per line, blank lines and surrounding spaces ignored."""
    return [line.strip() for line in text.splitlines() if line.strip()]
