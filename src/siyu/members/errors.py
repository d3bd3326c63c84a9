from siyu.core.errors import SiyuError
from siyu.core.i18n import _l


class MemberNotFound(SiyuError):
    code = "member.not_found"
    status = 404
    title = _l("Member not found")
    detail = _l("No member {member_id}")


class MemberExists(SiyuError):
    code = "member.exists"
    status = 409
    title = _l("Member already exists")
    detail = _l("A member with openid {openid} already exists (id {member_id})")


class PlatformAccountTaken(SiyuError):
    code = "member.platform_account_taken"
    status = 409
    title = _l("Platform account already bound")
    detail = _l("The {platform} account {account} is bound to another member")


class PlatformAlreadyBound(SiyuError):
    code = "member.platform_already_bound"
    status = 409
    title = _l("Platform already bound")
    detail = _l("This member already has a {platform} account ({account})")


class UnknownPlatform(SiyuError):
    code = "member.unknown_platform"
    status = 422
    title = _l("Unknown platform")
    detail = _l("Platform must be one of: {allowed}")


class InvalidTiers(SiyuError):
    code = "member.invalid_tiers"
    status = 422
    title = _l("Invalid tiers")
    detail = _l("Tiers need distinct names and growth thresholds, the first at 0")


class WechatLoginFailed(SiyuError):
    code = "member.wechat_login_failed"
    status = 400
    title = _l("WeChat login failed")
    detail = _l("WeChat refused the login code ({errcode}: {errmsg})")


class WechatUnavailable(SiyuError):
    code = "member.wechat_unavailable"
    status = 503
    title = _l("WeChat unavailable")
    detail = _l("WeChat could not be reached; try again in a moment")


class WechatNotConfigured(SiyuError):
    code = "member.wechat_not_configured"
    status = 409
    title = _l("WeChat login not configured")
    detail = _l("This tenant has no mini-program AppID and secret yet")
