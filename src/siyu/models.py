"""Every table, for Alembic and tests."""


def import_all() -> None:
    import siyu.checkin.models
    import siyu.ledger.models
    import siyu.live.models
    import siyu.mall.models  # noqa: F401
    import siyu.members.models
    import siyu.messaging.models
    import siyu.orders.models
    import siyu.tenants.models  # noqa: F401
    import siyu.trials.models  # noqa: F401
