from siyu.core.errors import SiyuError
from siyu.core.i18n import _l


class TenantNotFound(SiyuError):
    code = "tenant.not_found"
    status = 404
    title = _l("Tenant not found")
    detail = _l("No tenant {slug}")


class TenantExists(SiyuError):
    code = "tenant.exists"
    status = 409
    title = _l("Tenant already exists")
    detail = _l("A tenant with slug {slug} already exists")


class InvalidTenant(SiyuError):
    code = "tenant.invalid"
    status = 422
    title = _l("Invalid tenant")
    detail = _l("{field}: {problem}")


class OperatorExists(SiyuError):
    code = "operator.exists"
    status = 409
    title = _l("Operator already exists")
    detail = _l("An operator named {username} already exists in this tenant")


class InvalidOperator(SiyuError):
    code = "operator.invalid"
    status = 422
    title = _l("Invalid operator")
    detail = _l("{field}: {problem}")


class OperatorNotFound(SiyuError):
    code = "operator.not_found"
    status = 404
    title = _l("Operator not found")
    detail = _l("No operator {operator_id}")
