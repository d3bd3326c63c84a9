"""The outbox through its public API: send, consent, dispatch, inbox."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from siyu.messaging import service
from siyu.messaging.errors import InvalidMessage, InvalidTemplate, NotCancellable
from siyu.messaging.models import Delivery, InboxItem
from siyu.messaging.service import Target
from tests.factories import make_member, make_tenant
from tests.messaging.conftest import drain


def inbox_of(db, member):
    return service.list_inbox(db, tenant_id=member.tenant_id, member_id=member.id)


def test_send_to_members_lands_in_their_inboxes_after_the_worker_runs(db):
    tenant = make_tenant(db)
    a, b = make_member(db, tenant, nickname="小鱼"), make_member(db, tenant, nickname="阿兰")

    msg = service.send(
        db,
        tenant_id=tenant.id,
        purpose="order:1:claimed",
        member_ids=[a.id, b.id],
        title="积分到账",
        body="{{ member.nickname }}，{{ order.points }} 积分已到账",
        context={"order": {"points": 300}},
    )
    db.commit()  # the request's commit: dispatch is enqueued only now
    assert inbox_of(db, a) == []
    ran = drain()

    assert "messaging.dispatch" in ran
    assert [i.body for i in inbox_of(db, a)] == ["小鱼，300 积分已到账"]
    assert [i.body for i in inbox_of(db, b)] == ["阿兰，300 积分已到账"]
    db.refresh(msg)
    assert msg.status == "done"
    assert service.status_counts(db, message_id=msg.id)["sent"] == 2
    assert msg.first_sent_at is not None


def test_sending_the_same_purpose_again_delivers_once_per_member(db):
    tenant = make_tenant(db)
    a, b = make_member(db, tenant), make_member(db, tenant)

    first = service.send(db, tenant_id=tenant.id, purpose="p", member_ids=[a.id], body="hi")
    db.commit()
    drain()
    again = service.send(db, tenant_id=tenant.id, purpose="p", member_ids=[a.id, b.id], body="hi")
    db.commit()
    drain()

    assert again.id == first.id
    assert len(inbox_of(db, a)) == 1
    assert len(inbox_of(db, b)) == 1
    assert again.total == 2


def test_rolled_back_send_queues_nothing(db):
    tenant = make_tenant(db)
    a = make_member(db, tenant)
    db.commit()

    service.send(db, tenant_id=tenant.id, purpose="p", member_ids=[a.id], body="hi")
    db.rollback()

    assert drain() == []
    assert db.scalar(select(func.count()).select_from(Delivery)) == 0


def test_send_ignores_members_of_another_tenant(db):
    mine, other = make_tenant(db), make_tenant(db)
    stranger = make_member(db, other)

    msg = service.send(db, tenant_id=mine.id, purpose="p", member_ids=[stranger.id], body="hi")

    assert msg.total == 0
    assert db.scalar(select(func.count()).select_from(Delivery)) == 0


def test_send_rejects_group_channels_for_members_and_bad_templates(db):
    tenant = make_tenant(db)
    a = make_member(db, tenant)

    with pytest.raises(InvalidMessage):
        service.send(
            db, tenant_id=tenant.id, purpose="p", member_ids=[a.id], body="x", channels=["robot"]
        )
    with pytest.raises(InvalidMessage):
        service.send(db, tenant_id=tenant.id, purpose="p", member_ids=[a.id], body="{{ x")
    with pytest.raises(InvalidMessage):
        service.send(db, tenant_id=tenant.id, purpose="", member_ids=[a.id], body="x")


def test_target_all_members_is_expanded_by_the_worker(db):
    tenant = make_tenant(db)
    fans = [make_member(db, tenant) for _ in range(7)]
    tagged = make_member(db, tenant, tags=["铁粉"])

    msg = service.send(
        db, tenant_id=tenant.id, purpose="b1", target=Target(kind="all_members"), body="hello"
    )
    tag_msg = service.send(
        db,
        tenant_id=tenant.id,
        purpose="b2",
        target=Target(kind="members_tag", tag="铁粉"),
        body="hi 铁粉",
    )
    db.commit()
    ran = drain()

    assert "messaging.expand" in ran
    db.refresh(msg)
    db.refresh(tag_msg)
    assert msg.total == 8
    assert tag_msg.total == 1
    assert all(len(inbox_of(db, m)) == 1 for m in fans)
    assert len(inbox_of(db, tagged)) == 2
    assert msg.status == tag_msg.status == "done"


def test_expansion_in_small_chunks_writes_each_member_once(db):
    tenant = make_tenant(db)
    fans = [make_member(db, tenant) for _ in range(5)]
    msg = service.send(
        db, tenant_id=tenant.id, purpose="b", target=Target(kind="all_members"), body="x"
    )
    while service.expand_chunk(db, message_id=msg.id, chunk=2):
        pass

    recipients = db.scalars(select(Delivery.member_id).where(Delivery.message_id == msg.id))
    assert sorted(recipients) == sorted(m.id for m in fans)
    assert msg.total == 5


def test_consent_is_consumed_once_and_no_consent_falls_back_to_inbox(db):
    tenant = make_tenant(db)
    a = make_member(db, tenant)

    c = service.record_consent(db, tenant_id=tenant.id, member_id=a.id, template_key="TPL", count=2)
    c = service.record_consent(db, tenant_id=tenant.id, member_id=a.id, template_key="TPL")

    assert c.remaining == 3
    assert service.consents_of(db, tenant_id=tenant.id, member_id=a.id) == {"TPL": 3}


def test_cancel_stops_what_has_not_gone_out(db):
    tenant = make_tenant(db)
    a, b = make_member(db, tenant), make_member(db, tenant)
    msg = service.send(db, tenant_id=tenant.id, purpose="p", member_ids=[a.id], body="x")
    claim = service.claim_batch(db, message_id=msg.id)
    assert claim.claimed == 1
    service.send(db, tenant_id=tenant.id, purpose="p", member_ids=[b.id], body="x")

    service.cancel(db, tenant_id=tenant.id, message_id=msg.id)

    counts = service.status_counts(db, message_id=msg.id)
    assert counts["sent"] == 1
    assert counts["cancelled"] == 1
    assert service.claim_batch(db, message_id=msg.id).claimed == 0
    assert service.cancel(db, tenant_id=tenant.id, message_id=msg.id).status == "cancelled"


def test_a_finished_message_cannot_be_cancelled(db):
    tenant = make_tenant(db)
    a = make_member(db, tenant)
    msg = service.send(db, tenant_id=tenant.id, purpose="p", member_ids=[a.id], body="x")
    service.claim_batch(db, message_id=msg.id)
    service.finish_if_done(db, message_id=msg.id)

    with pytest.raises(NotCancellable):
        service.cancel(db, tenant_id=tenant.id, message_id=msg.id)


def test_template_breaking_a_subscribe_field_limit_is_rejected_when_saved(db):
    tenant = make_tenant(db)

    with pytest.raises(InvalidTemplate) as err:
        service.save_template(
            db,
            tenant_id=tenant.id,
            key="t",
            name="t",
            body="x",
            subscribe={
                "template_id": "TPL",
                "data": {"thing1": "这是一段超过二十个字的直播主题说明文字啊啊啊"},
            },
        )
    assert err.value.params["field"] == "subscribe.data.thing1"
    with pytest.raises(InvalidTemplate):
        service.save_template(db, tenant_id=tenant.id, key="t", name="t", body="字" * 700)
    # Valid syntax that fails when rendered (no such function: templates get no globals).
    with pytest.raises(InvalidTemplate) as err:
        service.save_template(db, tenant_id=tenant.id, key="t", name="t", body="{{ range(3) }}")
    assert err.value.params == {"field": "body", "problem": "'range' is undefined"}
    ok = service.save_template(
        db,
        tenant_id=tenant.id,
        key="t",
        name="t",
        body="{{ session.theme }}",
        subscribe={"template_id": "TPL", "data": {"thing1": "{{ session.theme }}"}},
    )
    assert ok.id


def test_sandbox_refuses_unsafe_template_code(db):
    tenant = make_tenant(db)
    a = make_member(db, tenant)
    msg = service.send(
        db,
        tenant_id=tenant.id,
        purpose="p",
        member_ids=[a.id],
        body="{{ member.__class__.__mro__ }}",
    )

    service.claim_batch(db, message_id=msg.id)

    d = db.scalar(select(Delivery).where(Delivery.message_id == msg.id))
    items = db.scalars(select(InboxItem)).all()
    # The sandbox renders unsafe attributes as undefined (empty): nothing leaks.
    assert d.status == "sent"
    assert "class" not in items[0].body
