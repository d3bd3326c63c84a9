from tests.core.hashing import fast_password_hashing  # noqa: F401
from tests.fakes.wechat import wechat, wechat_server  # noqa: F401
