from siyu.core.errors import SiyuError
from siyu.core.i18n import _l


class InsufficientPoints(SiyuError):
    code = "points.insufficient"
    status = 409
    title = _l("Not enough points")
    detail = _l("{balance} points available, {wanted} needed")


class InvalidPoints(SiyuError):
    code = "points.invalid_amount"
    status = 422
    title = _l("Invalid points amount")
    detail = _l("Points must be a whole number from 1 to {max}")


class InvalidReason(SiyuError):
    code = "points.invalid_reason"
    status = 422
    title = _l("Invalid reason code")
    detail = _l("A reason code is 1–64 lowercase letters, digits, '_', '.', ':' or '-'")


class InvalidExpiry(SiyuError):
    code = "points.invalid_expiry"
    status = 422
    title = _l("Invalid expiry")
    detail = _l("The expiry must be a future instant with a timezone")


class IdempotencyConflict(SiyuError):
    code = "points.idempotency_conflict"
    status = 409
    title = _l("Idempotency key already used")
    detail = _l("Key {key} was already used for a different change (entry {entry_id})")


class EntryNotFound(SiyuError):
    code = "points.entry_not_found"
    status = 404
    title = _l("Entry not found")
    detail = _l("No ledger entry {entry_id}")


class NotReversible(SiyuError):
    code = "points.not_reversible"
    status = 409
    title = _l("Entry cannot be reversed")
    detail = _l("Only credits and debits can be reversed; entry {entry_id} is a {kind}")


class ReversalTooLarge(SiyuError):
    code = "points.reversal_too_large"
    status = 409
    title = _l("Reversal too large")
    detail = _l("Only {reversible} points of entry {entry_id} are left to reverse")
