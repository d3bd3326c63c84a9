from siyu.core.errors import InvalidField, SiyuError
from siyu.core.i18n import _l


class MakeupNotAllowed(SiyuError):
    code = "checkin.makeup_not_allowed"
    status = 409
    title = _l("No make-up check-in for that day")
    detail = _l("{problem}")


class InvalidRule(InvalidField):
    code = "checkin.invalid_rule"
    status = 422
    title = _l("Invalid check-in rule")
    detail = _l("{field}: {problem}")
