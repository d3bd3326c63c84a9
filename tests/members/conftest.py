from tests.fakes.wechat import wechat, wechat_server  # noqa: F401
