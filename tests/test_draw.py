"""The published draw algorithm (siyu.draw): a vector computed here independently, properties
over random inputs, and ``siyu draw verify``."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from siyu import draw
from siyu.cli import app

SEED = bytes(range(32))  # 000102…1f
ENTRIES = ["7", "10", "3", "25", "100", "42", "8", "1"]


def reference(seed: bytes, entries: list[str], k: int) -> list[str]:
    """The issue's algorithm written out plainly, sharing no code with siyu.draw."""
    pool = sorted(entries, key=lambda e: e.encode("utf-8"))
    ints: list[int] = []
    counter = 0

    def next_int() -> int:
        nonlocal counter
        if not ints:
            digest = hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
            ints.extend(struct.unpack(">QQQQ", digest))
            counter += 1
        return ints.pop(0)

    def uniform(m: int) -> int:
        limit = (2**64 // m) * m
        while True:
            x = next_int()
            if x < limit:
                return x % m

    n = len(pool)
    k = min(k, n)
    for i in range(k):
        j = i + uniform(n - i)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:k]


def test_known_vector_matches_a_hand_computation():
    # By hand from the first digest of the stream: SHA-256(seed ‖ 0^8) gives four integers;
    # none reaches the rejection limit for m ≤ 8 (the chance is < 8/2^64), so
    # j_i = i + x_i mod (8 − i), applied to the UTF-8-sorted entries.
    digest = hashlib.sha256(SEED + b"\x00" * 8).digest()
    x = [int.from_bytes(digest[i : i + 8], "big") for i in range(0, 32, 8)]
    pool = ["1", "10", "100", "25", "3", "42", "7", "8"]  # sorted as bytes: "10" < "100" < "25"
    for i in range(3):
        j = i + x[i] % (8 - i)
        pool[i], pool[j] = pool[j], pool[i]

    assert draw.winners(SEED, ENTRIES, 3) == pool[:3]
    assert draw.commitment(SEED) == hashlib.sha256(SEED).hexdigest()
    assert (
        draw.commitment(SEED) == "630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd"
    )


def test_stream_reads_four_big_endian_integers_per_digest_with_an_8_byte_counter():
    ints = draw.stream(SEED)
    first = [next(ints) for _ in range(8)]

    block0 = struct.unpack(">4Q", hashlib.sha256(SEED + struct.pack(">Q", 0)).digest())
    block1 = struct.unpack(">4Q", hashlib.sha256(SEED + struct.pack(">Q", 1)).digest())
    assert first == [*block0, *block1]


def test_uniform_rejects_values_that_would_bias_the_modulo():
    m = 3
    limit = (2**64 // m) * m
    values = iter([limit, 2**64 - 1, 5])  # the first two are rejected

    assert draw._uniform(values, m) == 5 % 3


def test_sorting_is_by_utf8_bytes_and_removes_duplicates():
    assert draw.sorted_entries(["b", "a", "B", "中", "a", "é"]) == sorted(
        {"b", "a", "B", "中", "é"}, key=lambda s: s.encode()
    )


def test_k_larger_than_the_entries_draws_everyone_and_zero_draws_no_one():
    assert sorted(draw.winners(SEED, ENTRIES, 50)) == sorted(ENTRIES)
    assert draw.winners(SEED, ENTRIES, 0) == []
    assert draw.winners(SEED, [], 3) == []


@pytest.mark.parametrize(
    "bad", ["", "zz", "00" * 15, "00" * 65, "0g" * 16], ids=["empty", "hex", "short", "long", "g"]
)
def test_seeds_outside_16_to_64_hex_bytes_are_refused(bad):
    with pytest.raises(draw.DrawInputError):
        draw.parse_seed(bad)


ids = st.lists(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
        min_size=1,
        max_size=8,
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(seed=st.binary(min_size=16, max_size=64), entries=ids, k=st.integers(0, 60))
def test_winners_are_distinct_entries_deterministic_and_match_the_reference(seed, entries, k):
    first = draw.winners(seed, entries, k)

    assert len(first) == min(k, len(set(entries)))
    assert len(set(first)) == len(first)
    assert set(first) <= set(entries)
    assert draw.winners(seed, list(reversed(entries)), k) == first  # input order is irrelevant
    assert first == reference(seed, list(set(entries)), k)


@settings(max_examples=100, deadline=None)
@given(seed=st.binary(min_size=16, max_size=32), entries=ids, k=st.integers(0, 40))
def test_fewer_winners_are_a_prefix_of_more(seed, entries, k):
    assert draw.winners(seed, entries, k) == draw.winners(seed, entries, k + 5)[:k]


def test_verify_command_prints_the_commitment_and_the_winners(tmp_path):
    path = tmp_path / "entries.txt"
    path.write_text("\n".join(ENTRIES) + "\n\n", encoding="utf-8")

    result = CliRunner().invoke(
        app,
        [
            "draw",
            "verify",
            "--seed",
            SEED.hex(),
            "--entries",
            str(path),
            "--winners",
            "3",
            "--json",
        ],
    )

    assert result.exit_code == 0, result.stdout
    out = json.loads(result.stdout)
    assert out["commitment"] == hashlib.sha256(SEED).hexdigest()
    assert out["winners"] == reference(SEED, ENTRIES, 3)


def test_verify_command_refuses_a_bad_seed_with_a_code(tmp_path):
    path = tmp_path / "entries.txt"
    path.write_text("1\n2\n", encoding="utf-8")

    result = CliRunner().invoke(
        app, ["draw", "verify", "--seed", "xyz", "--entries", str(path), "--winners", "1", "--json"]
    )

    assert result.exit_code == 1
    assert json.loads(result.stdout)["code"] == "draw.invalid_input"
