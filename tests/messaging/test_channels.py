"""The channel adapters against the fake WeChat / WeCom server: consent, tokens, errors,
retries with backoff, rate limits."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from siyu.messaging import service, tasks
from siyu.messaging.models import Delivery, WecomGroup
from siyu.tenants import service as tenants
from tests.factories import make_member, make_tenant
from tests.fakes import weixin as fake

SUB = {
    "template_id": "TPL-live",
    "page": "pages/live?id={{ session.id }}",
    "data": {"thing1": "{{ session.theme }}", "time2": "{{ session.start_time }}"},
}
CTX = {"session": {"id": 42, "theme": "双11美妆专场", "start_time": "2026-11-11 19:30"}}


@pytest.fixture
def tenant(db):
    t = make_tenant(db)
    tenants.update_settings(
        db,
        tenant_id=t.id,
        changes={
            "wechat": {"appid": fake.APPID, "secret": fake.SECRET},
            "official_account": {"appid": fake.OA_APPID, "secret": fake.OA_SECRET},
            "wecom": {"corpid": fake.CORPID, "secret": fake.CORPSECRET, "sender": "zhangsan"},
        },
    )
    service.save_template(
        db,
        tenant_id=t.id,
        key="live",
        name="开播",
        title="开播",
        body="{{ session.theme }} 开播啦",
        subscribe=SUB,
    )
    return t


def send(db, tenant, members, purpose="live:42", **kw):
    msg = service.send(
        db,
        tenant_id=tenant.id,
        purpose=purpose,
        member_ids=[m.id for m in members],
        template="live",
        context=CTX,
        **kw,
    )
    tasks.run_dispatch(msg.id)
    return msg


def delivery(db, msg, member=None):
    q = select(Delivery).where(Delivery.message_id == msg.id)
    if member is not None:
        q = q.where(Delivery.member_id == member.id)
    return db.scalar(q)


def consent(db, tenant, member, weixin, n=1):
    service.record_consent(
        db, tenant_id=tenant.id, member_id=member.id, template_key="TPL-live", count=n
    )
    weixin.grant(member.openid, "TPL-live", n)


def test_subscribe_message_goes_out_with_consent_and_spends_it(db, tenant, weixin):
    fan = make_member(db, tenant)
    consent(db, tenant, fan, weixin)

    msg = send(db, tenant, [fan])

    d = delivery(db, msg)
    assert (d.channel, d.status, d.attempts) == ("subscribe", "sent", 1)
    assert d.external_id
    sent = weixin.requests[0]
    assert sent["touser"] == fan.openid
    assert sent["page"] == "pages/live?id=42"
    assert sent["data"] == {
        "thing1": {"value": "双11美妆专场"},
        "time2": {"value": "2026-11-11 19:30"},
    }
    assert service.consents_of(db, tenant_id=tenant.id, member_id=fan.id) == {"TPL-live": 0}


def test_without_consent_the_member_gets_the_inbox_and_no_api_call_is_made(db, tenant, weixin):
    fan = make_member(db, tenant)

    msg = send(db, tenant, [fan])

    assert (delivery(db, msg).channel, delivery(db, msg).status) == ("inbox", "sent")
    assert weixin.requests == []
    assert [i.body for i in service.list_inbox(db, tenant_id=tenant.id, member_id=fan.id)] == [
        "双11美妆专场 开播啦"
    ]


def test_access_token_is_fetched_once_and_reused(db, tenant, weixin):
    fans = [make_member(db, tenant) for _ in range(3)]
    for f in fans:
        consent(db, tenant, f, weixin, n=2)

    send(db, tenant, fans, purpose="a")
    send(db, tenant, fans, purpose="b")

    assert weixin.token_fetches[fake.APPID] == 1
    assert sum(weixin.delivered.values()) == 6


@pytest.mark.parametrize("break_token", ["expire_tokens", "revoke_tokens"])
def test_expired_or_invalid_token_is_refetched_once(db, tenant, weixin, break_token):
    fan, other = make_member(db, tenant), make_member(db, tenant)
    consent(db, tenant, fan, weixin)
    consent(db, tenant, other, weixin)
    send(db, tenant, [fan], purpose="first")
    getattr(weixin, break_token)()

    msg = send(db, tenant, [other], purpose="second")

    assert delivery(db, msg).status == "sent"
    assert weixin.token_fetches[fake.APPID] == 2


def test_a_token_error_that_persists_is_retried_later_not_looped(db, tenant, weixin):
    fan = make_member(db, tenant)
    consent(db, tenant, fan, weixin)
    weixin.fail_next("subscribe", 40001, times=2)

    msg = send(db, tenant, [fan])

    d = delivery(db, msg)
    assert (d.status, d.error_code, d.attempts) == ("queued", "40001", 1)
    assert weixin.token_fetches[fake.APPID] == 2


def test_quota_error_is_retried_with_backoff_then_sent(db, tenant, weixin, clock):
    fan = make_member(db, tenant)
    consent(db, tenant, fan, weixin)
    weixin.fail_next("subscribe", 45009)

    msg = send(db, tenant, [fan])
    d = delivery(db, msg)
    assert (d.status, d.error_code) == ("queued", "45009")
    assert (d.next_attempt_at - clock.now).total_seconds() == 2
    tasks.run_dispatch(msg.id)  # not due yet: nothing happens
    assert len(weixin.requests) == 0
    clock.advance(seconds=2)
    tasks.run_dispatch(msg.id)

    db.refresh(d)
    assert (d.status, d.attempts, d.channel) == ("sent", 2, "subscribe")
    assert weixin.delivered[f"subscribe:{fan.openid}"] == 1
    # The retry spent no second consent.
    assert service.consents_of(db, tenant_id=tenant.id, member_id=fan.id) == {"TPL-live": 0}


def test_server_errors_are_retried_until_the_attempts_run_out(db, tenant, weixin, clock):
    fan = make_member(db, tenant)
    consent(db, tenant, fan, weixin)
    weixin.fail_next("subscribe:http", 502, times=service.MAX_ATTEMPTS)
    msg = send(db, tenant, [fan])
    waits = []
    d = delivery(db, msg)
    while d.status == "queued":
        waits.append((d.next_attempt_at - clock.now).total_seconds())
        clock.set(d.next_attempt_at)
        tasks.run_dispatch(msg.id)
        db.refresh(d)

    assert waits == [2, 4, 8, 16]  # exponential backoff
    assert (d.status, d.attempts, d.error_code) == ("failed", service.MAX_ATTEMPTS, "http_502")
    assert weixin.delivered == {}


@pytest.mark.parametrize(("code", "reason"), [(43101, "43101"), (47003, "47003")])
def test_refusals_are_undeliverable_with_the_platform_message(db, tenant, weixin, code, reason):
    fan = make_member(db, tenant)
    consent(db, tenant, fan, weixin)
    weixin.fail_next("subscribe", code)

    msg = send(db, tenant, [fan])

    d = delivery(db, msg)
    assert (d.status, d.error_code, d.error_message, d.attempts) == (
        "undeliverable",
        reason,
        "injected",
        1,
    )
    db.refresh(msg)
    assert msg.status == "done"


def test_consent_recorded_here_but_spent_at_wechat_is_undeliverable(db, tenant, weixin):
    fan = make_member(db, tenant)
    service.record_consent(db, tenant_id=tenant.id, member_id=fan.id, template_key="TPL-live")

    msg = send(db, tenant, [fan])

    d = delivery(db, msg)
    assert (d.status, d.error_code) == ("undeliverable", "43101")
    assert "refuse" in d.error_message


def test_long_values_are_cut_to_the_field_limit(db, tenant, weixin):
    fan = make_member(db, tenant)
    consent(db, tenant, fan, weixin)
    msg = service.send(
        db,
        tenant_id=tenant.id,
        purpose="long",
        member_ids=[fan.id],
        template="live",
        context={"session": {"theme": "一" * 30, "id": 1, "start_time": "19:30"}},
    )
    tasks.run_dispatch(msg.id)

    assert delivery(db, msg).status == "sent"
    assert weixin.requests[0]["data"]["thing1"]["value"] == "一" * 19 + "…"


def test_official_account_template_message(db, tenant, weixin):
    service.save_template(
        db,
        tenant_id=tenant.id,
        key="oa",
        name="oa",
        body="x",
        oa_template={
            "template_id": "OA-1",
            "url": "https://m.example/x",
            "data": {"first": "{{ member.nickname }} 你好"},
        },
    )
    fan = make_member(db, tenant, nickname="阿兰")
    msg = service.send(
        db,
        tenant_id=tenant.id,
        purpose="oa",
        member_ids=[fan.id],
        template="oa",
        channels=["oa_template", "inbox"],
    )
    tasks.run_dispatch(msg.id)

    d = delivery(db, msg)
    assert (d.channel, d.status) == ("oa_template", "sent")
    assert weixin.requests[0]["data"] == {"first": {"value": "阿兰 你好"}}
    assert weixin.token_fetches[fake.OA_APPID] == 1


def groups(db, tenant, n, *, robot_key=fake.ROBOT_KEY, tags=()):
    return [
        service.save_group(
            db,
            tenant_id=tenant.id,
            chat_id=f"wr{i}",
            name=f"粉丝{i}群",
            robot_key=robot_key,
            tags=tags,
        )
        for i in range(n)
    ]


def test_group_robot_posts_text_to_each_group(db, tenant, weixin):
    groups(db, tenant, 2, tags=["美妆"])
    msg = service.send(
        db,
        tenant_id=tenant.id,
        purpose="g",
        target=service.Target(kind="groups_tag", tag="美妆"),
        body="{{ group.name }}：今晚 8 点开播",
    )
    while service.expand_chunk(db, message_id=msg.id):
        pass
    tasks.run_dispatch(msg.id)

    assert service.status_counts(db, message_id=msg.id)["sent"] == 2
    assert sorted(r["text"]["content"] for r in weixin.requests) == [
        "粉丝0群：今晚 8 点开播",
        "粉丝1群：今晚 8 点开播",
    ]


def test_group_robot_with_a_bad_key_is_undeliverable(db, tenant, weixin):
    groups(db, tenant, 1, robot_key="no-such-key")
    msg = service.send(
        db, tenant_id=tenant.id, purpose="g", target=service.Target(kind="all_groups"), body="x"
    )
    service.expand_chunk(db, message_id=msg.id)
    tasks.run_dispatch(msg.id)

    d = delivery(db, msg)
    assert (d.status, d.error_code) == ("undeliverable", "93000")


def test_robot_rate_limit_defers_without_spending_attempts(db, tenant, weixin):
    tenants.update_settings(
        db, tenant_id=tenant.id, changes={"message_rate_limits": {"robot": [2, 60]}}
    )
    groups(db, tenant, 3)  # three groups, one robot: 2 a minute
    msg = service.send(
        db, tenant_id=tenant.id, purpose="g", target=service.Target(kind="all_groups"), body="x"
    )
    service.expand_chunk(db, message_id=msg.id)
    tasks.run_dispatch(msg.id)

    counts = service.status_counts(db, message_id=msg.id)
    assert (counts["sent"], counts["queued"]) == (2, 1)
    deferred = db.scalar(
        select(Delivery).where(Delivery.message_id == msg.id, Delivery.status == "queued")
    )
    assert (deferred.error_code, deferred.attempts) == ("rate_limited", 0)
    assert len(weixin.requests) == 2


def test_customer_group_mass_message_via_add_msg_template(db, tenant, weixin):
    g = service.save_group(
        db,
        tenant_id=tenant.id,
        chat_id="wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA",
        name="铁粉群",
        owner_userid="lisi",
    )
    msg = service.send(
        db,
        tenant_id=tenant.id,
        purpose="mass",
        target=service.Target(kind="all_groups"),
        body="双11 福利来啦",
        channels=["group_mass"],
    )
    service.expand_chunk(db, message_id=msg.id)
    tasks.run_dispatch(msg.id)

    d = delivery(db, msg)
    assert (d.channel, d.status) == ("group_mass", "sent")
    assert d.external_id.startswith("msg")
    req = weixin.requests[0]
    assert (req["chat_type"], req["sender"], req["chat_id_list"]) == ("group", "lisi", [g.chat_id])
    assert req["text"] == {"content": "双11 福利来啦"}


def test_group_mass_waits_for_the_owner_and_records_what_wecom_reports(db, tenant, weixin):
    chats = ["wr-confirmed", "wr-not-customer", "wr-waiting"]
    for chat in chats:
        service.save_group(db, tenant_id=tenant.id, chat_id=chat, owner_userid="lisi")
    msg = service.send(
        db,
        tenant_id=tenant.id,
        purpose="mass-poll",
        target=service.Target(kind="all_groups"),
        body="今晚 8 点开播",
        channels=["group_mass"],
    )
    service.expand_chunk(db, message_id=msg.id)
    tasks.run_dispatch(msg.id)
    by_chat = {
        g.chat_id: d
        for d, g in db.execute(
            select(Delivery, WecomGroup)
            .join(WecomGroup, WecomGroup.id == Delivery.group_id)
            .where(Delivery.message_id == msg.id)
        )
    }
    assert {d.confirm_state for d in by_chat.values()} == {"awaiting"}

    weixin.owner_status.update({chats[0]: 0, chats[1]: 0, chats[2]: 0})
    assert tasks.poll_group_mass() == 0  # nobody confirmed yet: nothing changes
    weixin.owner_status.update({chats[0]: 1, chats[1]: 2})
    assert tasks.poll_group_mass() == 2
    assert tasks.poll_group_mass() == 0  # settled ones are not asked again

    for d in by_chat.values():
        db.refresh(d)
    confirmed, refused, waiting = (by_chat[c] for c in chats)
    assert (confirmed.status, confirmed.confirm_state) == ("sent", "confirmed")
    assert (refused.status, refused.error_code) == ("undeliverable", "wecom.not_customer")
    assert (waiting.status, waiting.confirm_state) == ("sent", "awaiting")


def test_group_without_robot_or_wecom_is_undeliverable(db, weixin):
    t = make_tenant(db)
    service.save_group(db, tenant_id=t.id, chat_id="wr-x")
    msg = service.send(
        db, tenant_id=t.id, purpose="g", target=service.Target(kind="all_groups"), body="x"
    )
    service.expand_chunk(db, message_id=msg.id)
    tasks.run_dispatch(msg.id)

    assert (delivery(db, msg).status, delivery(db, msg).error_code) == (
        "undeliverable",
        "no_channel",
    )


def test_group_mass_the_owner_never_confirms_is_given_up_after_a_week(db, tenant, weixin, clock):
    service.save_group(db, tenant_id=tenant.id, chat_id="wr-silent", owner_userid="lisi")
    weixin.owner_status["wr-silent"] = 0
    msg = service.send(
        db,
        tenant_id=tenant.id,
        purpose="mass-silent",
        target=service.Target(kind="all_groups"),
        body="福利",
        channels=["group_mass"],
    )
    service.expand_chunk(db, message_id=msg.id)
    tasks.run_dispatch(msg.id)
    clock.advance(days=6)
    assert tasks.poll_group_mass() == 0
    clock.advance(days=2)
    assert tasks.poll_group_mass() == 1

    d = delivery(db, msg)
    db.refresh(d)
    assert (d.status, d.error_code, d.confirm_state) == (
        "undeliverable",
        "wecom.owner_did_not_confirm",
        "",
    )


def test_a_second_dispatcher_in_one_process_leaves_the_message_to_the_first(db, tenant, weixin):
    members = [make_member(db, tenant) for _ in range(3)]
    msg = service.send(
        db,
        tenant_id=tenant.id,
        purpose="live:7",
        member_ids=[m.id for m in members],
        template="live",
        context=CTX,
    )
    assert tasks._local.enter(msg.id)  # a dispatcher of the message is running in this process
    assert tasks.run_dispatch(msg.id) == 0  # a second one leaves the message to it
    db.expire_all()
    assert {delivery(db, msg, m).status for m in members} == {service.QUEUED}
    # Asked for while it ran, the first claims once more before it stops...
    assert not tasks._local.leave(msg.id)
    assert tasks._local.leave(msg.id)
    # ...and once it has stopped, the next dispatcher here sends.
    assert tasks.run_dispatch(msg.id) == 3
    db.expire_all()
    assert {delivery(db, msg, m).status for m in members} == {service.SENT}
    assert tasks._local.enter(msg.id)  # and leaves nothing registered behind
    assert tasks._local.leave(msg.id)


def test_send_all_answers_each_job_in_its_place_whatever_order_the_answers_come_in(weixin):
    from siyu.messaging.channels import Sender, credentials_of
    from siyu.messaging.service import Job
    from tests.messaging.test_http import in_own_loop

    jobs = [
        Job(
            delivery_id=100 + i,
            tenant_id=1,
            channel="subscribe",
            payload={
                "touser": f"o-lane-{i}",
                "template_id": "TPL-live",
                "data": {"thing1": {"value": "零食节"}},
            },
            attempts=1,
        )
        for i in range(9)
    ]
    for i in range(0, 9, 3):  # every third fan allowed the message
        weixin.grant(f"o-lane-{i}", "TPL-live")
    creds = {1: credentials_of({"wechat": {"appid": fake.APPID, "secret": fake.SECRET}})}

    outcomes = []

    async def scenario() -> None:
        async with Sender(creds, concurrency=2) as sender:  # two lanes share the nine jobs
            outcomes.extend(await sender.send_all(jobs))

    in_own_loop(scenario)

    assert [(o.delivery_id, o.status, o.error_code) for o in outcomes] == [
        (100 + i, "sent", "") if i % 3 == 0 else (100 + i, "undeliverable", "43101")
        for i in range(9)
    ]
