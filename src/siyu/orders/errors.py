from siyu.core.errors import SiyuError
from siyu.core.i18n import _l


class OrderNotFound(SiyuError):
    code = "orders.not_found"
    status = 404
    title = _l("Order not found")
    detail = _l("No order {order_no} on {platform}")


class ImportNotFound(SiyuError):
    code = "orders.import_not_found"
    status = 404
    title = _l("Import not found")
    detail = _l("No import {import_id}")


class ClaimNotFound(SiyuError):
    code = "orders.claim_not_found"
    status = 404
    title = _l("Claim not found")
    detail = _l("No claim {claim_id}")


class UnreadableFile(SiyuError):
    code = "orders.unreadable_file"
    status = 422
    title = _l("File not recognised")
    detail = _l("{problem}")


class UnknownFormat(SiyuError):
    code = "orders.unknown_format"
    status = 422
    title = _l("Unknown file format")
    detail = _l("Format must be one of: {allowed}")


class InvalidClaim(SiyuError):
    code = "orders.invalid_claim"
    status = 422
    title = _l("Invalid claim")
    detail = _l("{field}: {problem}")


class OrderUnpaid(SiyuError):
    code = "orders.unpaid"
    status = 409
    title = _l("Order not paid")
    detail = _l("Order {order_no} is not paid, or was closed")


class AlreadyClaimed(SiyuError):
    code = "orders.already_claimed"
    status = 409
    title = _l("Order already claimed")
    detail = _l("Order {order_no} has already been claimed")


class ClaimWindowClosed(SiyuError):
    code = "orders.claim_window_closed"
    status = 409
    title = _l("Claim window closed")
    detail = _l("Orders can be claimed within {days} days of payment")


class AccountMismatch(SiyuError):
    code = "orders.account_mismatch"
    status = 409
    title = _l("Account does not match")
    detail = _l("The order's buyer is not your bound {platform} account")


class AccountTaken(SiyuError):
    code = "orders.account_taken"
    status = 409
    title = _l("Account belongs to another member")
    detail = _l("{platform} account {account} is bound to another member")


class BoundToOtherAccount(SiyuError):
    code = "orders.bound_to_other_account"
    status = 409
    title = _l("Another account is bound")
    detail = _l("Your {platform} account is {account}; ask customer service to change it")


class RateLimited(SiyuError):
    code = "orders.rate_limited"
    status = 429
    title = _l("Too many attempts")
    detail = _l("Too many claim attempts; try again in {seconds} seconds")


class ClaimingLocked(SiyuError):
    code = "orders.claiming_locked"
    status = 423
    title = _l("Claiming locked")
    detail = _l("Too many failed claims; claiming is locked until {until}")


class NotReviewable(SiyuError):
    code = "orders.not_reviewable"
    status = 409
    title = _l("Claim not awaiting review")
    detail = _l("Claim {claim_id} is {status}, not awaiting review")


class InvalidRule(SiyuError):
    code = "orders.invalid_rule"
    status = 422
    title = _l("Invalid claim rule")
    detail = _l("{field}: {problem}")


class BelowMinimum(SiyuError):
    code = "orders.below_minimum"
    status = 409
    title = _l("Order below the minimum amount")
    detail = _l("Orders under the minimum amount earn no points")


class ClaimExpired(SiyuError):
    code = "orders.claim_expired"
    status = 409
    title = _l("Order not found in time")
    detail = _l("The order was not imported within the claim window")


class ReviewRejected(SiyuError):
    code = "orders.review_rejected"
    status = 409
    title = _l("Rejected after review")
    detail = _l("An operator rejected this claim")
