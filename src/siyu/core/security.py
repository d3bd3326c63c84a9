"""Password hashing (argon2id), API token secrets and signed member tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from siyu.core.settings import get_settings

_hasher = PasswordHasher()
# A real hash to verify against when the user does not exist, so timing does not reveal it.
_DUMMY = _hasher.hash("siyu-dummy-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_api_token() -> tuple[str, str, str]:
    """(secret shown once, its SHA-256 to store, a short prefix to recognise it by)."""
    secret = "siyu_" + secrets.token_urlsafe(32)
    return secret, token_digest(secret), secret[:12]


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().secret_key, salt=salt)


MEMBER_TOKEN_TTL = 30 * 24 * 3600


def sign_member_token(*, tenant_id: int, member_id: int) -> str:
    return _serializer("member-token").dumps({"t": tenant_id, "m": member_id})


def read_member_token(token: str) -> tuple[int, int] | None:
    """(tenant_id, member_id) of a valid, unexpired member token, else None."""
    try:
        data = _serializer("member-token").loads(token, max_age=MEMBER_TOKEN_TTL)
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(data, dict) or not {"t", "m"} <= data.keys():
        return None
    return int(data["t"]), int(data["m"])


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def same_token(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
