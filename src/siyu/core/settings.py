"""Configuration from SIYU_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DEV_SECRET = "dev-insecure-secret-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIYU_", extra="ignore")

    database_url: str = "sqlite:///./var/siyu.db"
    redis_url: str | None = None
    secret_key: str = _DEV_SECRET
    # Bearer token of the platform admin (creates tenants over the API); unset = no such API.
    platform_token: str | None = None
    bind: str = "127.0.0.1:8000"
    var_dir: Path = Path("./var")
    # Does `siyu serve` run a job consumer in-process? Default: yes unless Redis is configured
    # (production runs `siyu worker` processes instead).
    embedded_consumer: bool | None = None
    # PostgreSQL connections each process keeps (web process or worker): plan the server's
    # max_connections as processes × this, plus psql and migrations.
    db_pool_size: int = Field(30, ge=3, le=500)  # 2 are kept back for the job consumer
    queue_name: str = "siyu"
    job_workers: int = 2
    wechat_api_base: str = "https://api.weixin.qq.com"
    wecom_api_base: str = "https://qyapi.weixin.qq.com"
    # How long a worker owns a claimed batch of deliveries before another may take it over.
    message_lease_seconds: int = 120
    # The H5 openid sign-in for development; off in production unless explicitly enabled.
    dev_login: bool | None = None
    log_json: bool = False
    # Production refuses the placeholder secret; development keeps working out of the box.
    env: str = "development"

    @field_validator("database_url")
    @classmethod
    def _psycopg3(cls, v: str) -> str:
        # A plain postgresql:// URL means psycopg 3, not SQLAlchemy's psycopg2 default.
        for prefix in ("postgresql://", "postgres://"):
            if v.startswith(prefix):
                return "postgresql+psycopg://" + v[len(prefix) :]
        return v

    @field_validator("redis_url")
    @classmethod
    def _empty_is_none(cls, v: str | None) -> str | None:
        return v or None

    def model_post_init(self, __context: object) -> None:
        if self.env == "production" and self.secret_key == _DEV_SECRET:
            raise ValueError("SIYU_SECRET_KEY must be set in production")
        if self.dev_login is None:
            self.dev_login = self.env != "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def runs_embedded_consumer(self) -> bool:
        if self.embedded_consumer is not None:
            return self.embedded_consumer
        return self.redis_url is None

    @property
    def host(self) -> str:
        return self.bind.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.bind.rsplit(":", 1)[1])


@lru_cache
def get_settings() -> Settings:
    return Settings()
