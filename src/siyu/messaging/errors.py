from siyu.core.errors import SiyuError
from siyu.core.i18n import _l


class MessageNotFound(SiyuError):
    code = "messages.not_found"
    status = 404
    title = _l("Message not found")
    detail = _l("No message {message_id}")


class TemplateNotFound(SiyuError):
    code = "messages.template_not_found"
    status = 404
    title = _l("Template not found")
    detail = _l("No message template {template}")


class ScheduleNotFound(SiyuError):
    code = "messages.schedule_not_found"
    status = 404
    title = _l("Schedule not found")
    detail = _l("No SOP schedule {schedule_id}")


class GroupNotFound(SiyuError):
    code = "messages.group_not_found"
    status = 404
    title = _l("Group not found")
    detail = _l("No WeCom group {group_id}")


class InvalidMessage(SiyuError):
    code = "messages.invalid"
    status = 422
    title = _l("Invalid message")
    detail = _l("{field}: {problem}")


class InvalidTemplate(SiyuError):
    code = "messages.invalid_template"
    status = 422
    title = _l("Invalid template")
    detail = _l("{field}: {problem}")


class InvalidSchedule(SiyuError):
    code = "messages.invalid_schedule"
    status = 422
    title = _l("Invalid schedule")
    detail = _l("{field}: {problem}")


class TemplateExists(SiyuError):
    code = "messages.template_exists"
    status = 409
    title = _l("Template key taken")
    detail = _l("A template with key {key} already exists")


class NotCancellable(SiyuError):
    code = "messages.not_cancellable"
    status = 409
    title = _l("Message cannot be cancelled")
    detail = _l("Message {message_id} is {status}; nothing is left to cancel")
