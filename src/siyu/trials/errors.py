from siyu.core.errors import InvalidField, SiyuError
from siyu.core.i18n import _l


class TrialNotFound(SiyuError):
    code = "trials.not_found"
    status = 404
    title = _l("Trial not found")
    detail = _l("No trial {trial_id}")


class ReportNotFound(SiyuError):
    code = "trials.report_not_found"
    status = 404
    title = _l("Report not found")
    detail = _l("No trial report {report_id}")


class InvalidTrial(InvalidField):
    code = "trials.invalid"
    title = _l("Invalid trial")


class NotOpen(SiyuError):
    code = "trials.not_open"
    status = 409
    title = _l("Applications are closed")
    detail = _l("Applications for {title} are open from {start} to {end}")


class DrawTooEarly(SiyuError):
    code = "trials.draw_too_early"
    status = 409
    title = _l("Too early to draw")
    detail = _l("Applications are open until {end}; draw after they close")


class TierRequired(SiyuError):
    code = "trials.tier_required"
    status = 403
    title = _l("Higher tier required")
    detail = _l("This trial is for members from tier {tier}")


class TagRequired(SiyuError):
    code = "trials.tag_required"
    status = 403
    title = _l("Not eligible")
    detail = _l("This trial is for members tagged {tag}")


class SeedRequired(SiyuError):
    code = "trials.seed_required"
    status = 422
    title = _l("Seed required")
    detail = _l("Reveal the seed you committed to (its SHA-256 is {commitment})")


class SeedMismatch(SiyuError):
    code = "trials.seed_mismatch"
    status = 422
    title = _l("Seed does not match")
    detail = _l("The SHA-256 of this seed is not the published commitment {commitment}")


class NotAWinner(SiyuError):
    code = "trials.not_a_winner"
    status = 409
    title = _l("Only winners report")
    detail = _l("You did not win this trial (or it has not been drawn yet)")


class ReportAccepted(SiyuError):
    code = "trials.report_accepted"
    status = 409
    title = _l("Report already accepted")
    detail = _l("Report {report_id} was accepted and can no longer change")
