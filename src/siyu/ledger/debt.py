"""Points a member owes: clawbacks of points already spent, settled from the next earnings.

Double entry holds throughout. Each member who ever owed has a ``debt:<member_id>`` account
(kind ``debt``) whose balance is minus what they owe; the wallet row mirrors it as ``debt``
(read in O(1), shown to the member):

- ``clawback`` of P points of a credit whose member holds only H < P: a reversal of H (wallet
  −H, issuance +H) and a ``debt`` entry of P − H (debt account −(P − H), issuance +(P − H));
  the wallet is untouched by the debt entry, so it never goes negative.
- the next ``grant`` to that member (the one hook in ``service.grant``) is followed in the same
  transaction by a ``settle`` entry of S = min(debt, balance): wallet −S (taken from lots,
  earliest expiry first), debt account +S.

``siyu ledger verify`` checks debt ≥ 0 and debt == −(postings of the debt account).
The PostgreSQL one-call grant returns no row when the wallet has debt (migration
2026-11-27 orders), so granting to a debtor always takes this Python path.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from siyu.ledger import models as m


@dataclass
class Clawback:
    reversed: int  # taken from the wallet
    debt: int  # recorded as debt
    entry_ids: list[int]


def debt_account(db: Session, tenant_id: int, member_id: int) -> m.Account:
    from siyu.ledger.service import _create_account

    code = f"{m.DEBT_ACCOUNT}:{member_id}"
    acc = db.scalar(
        select(m.Account).where(m.Account.tenant_id == tenant_id, m.Account.code == code)
    )
    if acc is None:
        acc = _create_account(
            db, tenant_id=tenant_id, code=code, kind=m.DEBT_ACCOUNT, member_id=None
        )
    return acc


def clawback(
    db: Session,
    *,
    tenant_id: int,
    entry_id: int,
    points: int,
    idempotency_key: str,
    actor: object,
    reason: str = "reversal",
    memo: str = "",
) -> Clawback:
    """Take back ``points`` of credit ``entry_id``: what the wallet holds is reversed, the rest
    becomes debt. A repeat with the same key changes nothing and reports the first result.

    Raises ReversalTooLarge if ``points`` exceeds what is left of the credit to take back."""
    from siyu.ledger import service as s
    from siyu.ledger.errors import ReversalTooLarge

    s._check_points(points)
    rev_key, debt_key = f"{idempotency_key}:reverse", f"{idempotency_key}:debt"
    original = s.get_entry(db, tenant_id=tenant_id, entry_id=entry_id)
    wallet = s._wallet(db, tenant_id, original.member_id, lock=True)
    done = [e for k in (rev_key, debt_key) if (e := s._existing(db, tenant_id, k)) is not None]
    if done:
        rev = sum(-e.points for e in done if e.kind == m.REVERSAL)
        debt = sum(int(e.memo.split("=")[-1]) for e in done if e.kind == m.DEBT)
        return Clawback(rev, debt, [e.id for e in done])
    db.refresh(original)
    owed_before = _recorded_debt_of(db, original)
    left = abs(original.points) - original.reversed_points - owed_before
    if points > left:
        raise ReversalTooLarge(entry_id=entry_id, reversible=left)
    s._expire_wallet(db, wallet)
    take = min(points, wallet.balance)
    ids: list[int] = []
    if take:
        e = s.reverse(
            db,
            tenant_id=tenant_id,
            entry_id=entry_id,
            idempotency_key=rev_key,
            actor=actor,  # type: ignore[arg-type]
            points=take,
            reason=reason,
            memo=memo,
        )
        ids.append(e.id)
    rest = points - take
    if rest:
        ids.append(_record_debt(db, wallet, original, rest, debt_key, actor, reason))
    return Clawback(take, rest, ids)


def _recorded_debt_of(db: Session, original: m.JournalEntry) -> int:
    """Points of a credit already clawed back as debt (not reversible any more)."""
    rows = db.scalars(
        select(m.JournalEntry.memo).where(
            m.JournalEntry.tenant_id == original.tenant_id,
            m.JournalEntry.kind == m.DEBT,
            m.JournalEntry.reference == f"entry:{original.id}",
        )
    ).all()
    return sum(int(memo.split("=")[-1]) for memo in rows)


def _record_debt(
    db: Session,
    wallet: m.Account,
    original: m.JournalEntry,
    points: int,
    key: str,
    actor: object,
    reason: str,
) -> int:
    from siyu.ledger import service as s

    entry = s._claim(
        db,
        s._entry_values(
            tenant_id=wallet.tenant_id,
            member_id=original.member_id,
            kind=m.DEBT,
            points=0,  # the wallet does not move: the member owes instead
            reason=reason,
            key=key,
            actor=actor,  # type: ignore[arg-type]
            memo=f"debt={points}",
            reference=f"entry:{original.id}",
        ),
    )
    assert entry is not None, "the wallet lock serialises clawbacks of one member"
    issuance = s._system_account(db, wallet.tenant_id, m.ISSUANCE)
    s._post(
        db,
        entry,
        [(debt_account(db, wallet.tenant_id, original.member_id), -points), (issuance, points)],
    )
    growth = wallet.growth - points if original.counts_for_growth else wallet.growth
    db.execute(
        update(m.Account)
        .where(m.Account.id == wallet.id)
        .values(debt=m.Account.debt + points, growth=max(0, growth))
        .execution_options(synchronize_session=False)
    )
    set_committed_value(wallet, "debt", wallet.debt + points)
    set_committed_value(wallet, "growth", max(0, growth))
    return entry.id


def settle(db: Session, wallet: m.Account, trigger: m.JournalEntry) -> m.JournalEntry | None:
    """After a credit to a (locked) wallet with debt: pay the debt from the balance first."""
    from siyu.ledger import service as s

    if wallet.debt <= 0:
        return None
    db.refresh(wallet, ["balance", "debt"])
    amount = min(wallet.debt, wallet.balance)
    if amount <= 0:
        return None
    lots = s._open_lots(db, wallet)
    takes = s._plan_takes(lots, amount)
    entry = s._claim(
        db,
        s._entry_values(
            tenant_id=wallet.tenant_id,
            member_id=trigger.member_id,
            kind=m.SETTLE,
            points=-amount,
            reason="debt_settlement",
            key=f"settle:{trigger.id}",
            actor=s.JOB,
            memo="",
            reference=f"entry:{trigger.id}",
        ),
    )
    if entry is None:  # already settled for this credit
        return None
    s._apply_takes(db, wallet, entry, takes)
    s._post(
        db,
        entry,
        [(wallet, -amount), (debt_account(db, wallet.tenant_id, trigger.member_id), amount)],
    )
    db.execute(
        update(m.Account)
        .where(m.Account.id == wallet.id)
        .values(debt=m.Account.debt - amount)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(wallet, "debt", wallet.debt - amount)
    return entry


def debt_of(db: Session, *, tenant_id: int, member_id: int) -> int:
    found = db.scalar(
        select(m.Account.debt).where(
            m.Account.tenant_id == tenant_id, m.Account.code == f"wallet:{member_id}"
        )
    )
    return int(found or 0)


def verify_debts(db: Session, *, tenant_id: int) -> list[tuple[str, str, int, int]]:
    """(problem, account, expected, actual) for every wallet whose debt disagrees with its
    debt account's postings, or is negative."""
    posted = dict(
        db.execute(
            select(m.Account.code, func.coalesce(func.sum(m.Posting.amount), 0))
            .join(m.Posting, m.Posting.account_id == m.Account.id)
            .where(m.Account.tenant_id == tenant_id, m.Account.kind == m.DEBT_ACCOUNT)
            .group_by(m.Account.code)
        ).all()
    )
    wallets = db.execute(
        select(m.Account.code, m.Account.member_id, m.Account.debt)
        .where(m.Account.tenant_id == tenant_id, m.Account.kind == m.WALLET)
        .execution_options(populate_existing=True)
    ).all()
    problems: list[tuple[str, str, int, int]] = []
    for code, member_id, debt in wallets:
        owed = -int(posted.pop(f"{m.DEBT_ACCOUNT}:{member_id}", 0))
        if debt != owed:
            problems.append(("debt_mismatch", code, owed, int(debt)))
        if debt < 0:
            problems.append(("negative_debt", code, 0, int(debt)))
    problems += [("debt_without_wallet", code, 0, int(v)) for code, v in posted.items() if v]
    return problems
