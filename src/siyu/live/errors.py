from siyu.core.errors import InvalidField, SiyuError
from siyu.core.i18n import _l


class SessionNotFound(SiyuError):
    code = "live.session_not_found"
    status = 404
    title = _l("Live session not found")
    detail = _l("No live session {session_id}")


class ProductNotFound(SiyuError):
    code = "live.product_not_found"
    status = 404
    title = _l("Product not found")
    detail = _l("No product {product_id} in any lineup")


class ReservationNotFound(SiyuError):
    code = "live.reservation_not_found"
    status = 404
    title = _l("Reservation not found")
    detail = _l("No reservation {reservation_id}")


class ShareNotFound(SiyuError):
    code = "live.share_not_found"
    status = 404
    title = _l("Shopping guide not found")
    detail = _l("This shopping-guide link does not exist or was revoked")


class LinkNotFound(SiyuError):
    code = "live.link_not_found"
    status = 404
    title = _l("Link not found")
    detail = _l("This reminder link does not exist")


class InvalidTransition(SiyuError):
    code = "live.invalid_transition"
    status = 409
    title = _l("Not possible in this state")
    detail = _l("A {status} session cannot be {action}")


class ReservationClosed(SiyuError):
    code = "live.reservation_closed"
    status = 409
    title = _l("Reservations closed")
    detail = _l("It is already live or over: nothing left to remind you of")


class InvalidLive(InvalidField):
    code = "live.invalid"
    status = 422
    title = _l("Invalid value")
    detail = _l("{field}: {problem}")
