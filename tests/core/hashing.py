"""Cheap argon2id parameters for tests that create many operators.

The production parameters (64 MiB, 3 passes) take about 0.1–0.4 s per hash on CI machines;
tests still hash and verify with real argon2id, just with a small cost.
"""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    from siyu.core import security

    monkeypatch.setattr(
        security, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
