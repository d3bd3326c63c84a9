from siyu.core.errors import InvalidField, SiyuError
from siyu.core.i18n import _l


class ItemNotFound(SiyuError):
    code = "mall.item_not_found"
    status = 404
    title = _l("Item not found")
    detail = _l("No mall item {item_id}")


class OrderNotFound(SiyuError):
    code = "mall.order_not_found"
    status = 404
    title = _l("Order not found")
    detail = _l("No mall order {order_id}")


class AddressNotFound(SiyuError):
    code = "mall.address_not_found"
    status = 404
    title = _l("Address not found")
    detail = _l("No address {address_id} in your address book")


class NotAvailable(SiyuError):
    code = "mall.not_available"
    status = 409
    title = _l("Not available")
    detail = _l("{title} cannot be redeemed now")


class OutOfStock(SiyuError):
    code = "mall.out_of_stock"
    status = 409
    title = _l("Out of stock")
    detail = _l("{title} is sold out")


class LimitReached(SiyuError):
    code = "mall.limit_reached"
    status = 409
    title = _l("Limit reached")
    detail = _l("You may redeem {title} at most {limit} times ({period})")


class TierRequired(SiyuError):
    code = "mall.tier_required"
    status = 403
    title = _l("Higher tier required")
    detail = _l("{title} is for members from tier {tier}")


class AddressRequired(SiyuError):
    code = "mall.address_required"
    status = 422
    title = _l("Shipping address required")
    detail = _l("Choose a shipping address from your address book")


class InvalidTransition(SiyuError):
    code = "mall.invalid_transition"
    status = 409
    title = _l("Not possible in this state")
    detail = _l("Order {order_id} is {status}; it cannot become {wanted}")


class IdempotencyConflict(SiyuError):
    code = "mall.idempotency_conflict"
    status = 409
    title = _l("Idempotency key already used")
    detail = _l("Key {key} was already used for a different redemption (order {order_id})")


class InvalidItem(InvalidField):
    code = "mall.invalid_item"
    title = _l("Invalid item")


class InvalidAddress(InvalidField):
    code = "mall.invalid_address"
    title = _l("Invalid address")


class NotCouponItem(SiyuError):
    code = "mall.not_coupon_item"
    status = 409
    title = _l("Not a coupon item")
    detail = _l("Codes can only be uploaded to coupon items")


class UnreadableFile(SiyuError):
    code = "mall.unreadable_file"
    status = 422
    title = _l("Unreadable file")
    detail = _l("{problem}")
