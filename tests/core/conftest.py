from tests.core.hashing import fast_password_hashing  # noqa: F401
