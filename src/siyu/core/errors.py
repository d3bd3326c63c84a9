"""Errors with stable machine-readable codes.

Every error a person can cause is a ``SiyuError`` subclass with a ``domain.reason`` code, an
HTTP status and a translated title and detail. The API renders them as problem+json, pages as a
readable message, the CLI as ``error [code]: message`` with exit status 1.
"""

from __future__ import annotations

from typing import Any, ClassVar

from siyu.core.i18n import LazyString, _l


class SiyuError(Exception):
    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    title: ClassVar[LazyString] = _l("Something went wrong")
    detail: ClassVar[LazyString | None] = None

    def __init__(self, **params: Any) -> None:
        self.params = params
        super().__init__(self.message())

    def message(self) -> str:
        text = self.detail or self.title
        try:
            return text.format(**self.params)
        except (KeyError, IndexError):
            return str(text)

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"/errors/{self.code}",
            "title": str(self.title),
            "status": self.status,
            "detail": self.message(),
            "code": self.code,
            "params": {k: _jsonable(v) for k, v in self.params.items()},
        }
        if instance:
            body["instance"] = instance
        return body


def _jsonable(v: Any) -> Any:
    return v if isinstance(v, str | int | float | bool | type(None) | list | dict) else str(v)


class NotFound(SiyuError):
    code = "resource.not_found"
    status = 404
    title = _l("Not found")
    detail = _l("No such {resource}")


class Unauthenticated(SiyuError):
    code = "auth.required"
    status = 401
    title = _l("Sign in required")
    detail = _l("Sign in to continue")


class BadCredentials(SiyuError):
    code = "auth.bad_credentials"
    status = 401
    title = _l("Wrong username or password")


class TooManySignIns(SiyuError):
    code = "auth.too_many_attempts"
    status = 429
    title = _l("Too many failed sign-ins")
    detail = _l("Sign-in is paused for this account; try again in {minutes} minutes.")


class InvalidToken(SiyuError):
    code = "auth.invalid_token"
    status = 401
    title = _l("Invalid or expired token")


class Forbidden(SiyuError):
    code = "auth.forbidden"
    status = 403
    title = _l("Not allowed")
    detail = _l("Your role may not {action}")


class CsrfFailed(SiyuError):
    code = "auth.csrf"
    status = 403
    title = _l("Form expired")
    detail = _l("The form expired or came from elsewhere; reload the page and try again")


class IdempotencyKeyRequired(SiyuError):
    code = "request.idempotency_key_required"
    status = 400
    title = _l("Idempotency key required")
    detail = _l("Send an Idempotency-Key header so a retry cannot apply the change twice")


class InvalidRequest(SiyuError):
    code = "request.invalid"
    status = 422
    title = _l("Invalid request")
    detail = _l("Some fields are missing or invalid")


class InvalidField(InvalidRequest):
    code = "request.invalid_field"
    status = 422
    title = _l("Invalid value")
    detail = _l("{field}: {problem}")


class Internal(SiyuError):
    code = "internal"
    status = 500
    title = _l("Something went wrong")
    detail = _l("An unexpected error happened; it has been logged as request {request_id}")


def all_error_classes() -> list[type[SiyuError]]:
    out: list[type[SiyuError]] = []
    stack = list(SiyuError.__subclasses__())
    while stack:
        cls = stack.pop()
        out.append(cls)
        stack.extend(cls.__subclasses__())
    return out
