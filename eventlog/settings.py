"""Settings: one typed object, built once at start and passed down.

Sources, strongest first: command-line flags (passed as overrides), the
environment (`TRADELOG_*`), an optional TOML file (`--config FILE` or
`TRADELOG_CONFIG`). A bad value stops the process with the setting named.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from redis.connection import parse_url

from ._exceptions import SettingsError

__all__ = ["Settings", "load_settings"]

_toml_path: Path | None = None
# Never echoed in an error: a Redis URL may hold a password.
_SECRET = frozenset(("api_keys", "redis_url"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRADELOG_", extra="forbid", frozen=True, validate_default=True
    )

    data_dir: Path = Path("./data")
    redis_url: str = "redis://127.0.0.1:6379/0"
    phase: Literal[1, 2, 3] = 1
    partitions: int = Field(8, ge=1, le=1024)
    fsync: Literal["always", "batch", "off"] = "always"
    api_keys: Annotated[tuple[str, ...], NoDecode] = ()
    key_prefix: str = Field("negotiation", pattern=r"^[A-Za-z0-9_.\-]+$")
    projection_wait_ms: int = Field(2000, ge=0, le=600_000)
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(3001, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    redis_timeout_ms: int = Field(500, ge=10, le=60_000)
    segment_bytes: int = Field(256 * 1024 * 1024, ge=4096)
    # Processes `tradelog project redis` runs, each on its share of the partitions;
    # 0: one per CPU (at most one per partition).
    redis_projector_processes: int = Field(0, ge=0, le=64)

    @field_validator("phase", mode="before")
    @classmethod
    def _phase_from_text(cls, value: Any) -> Any:
        # The environment and flags give "2"; a Literal of ints does not coerce text.
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            return int(value)
        return value

    @field_validator(
        "phase", "partitions", "projection_wait_ms", "max_body_bytes", "port", "workers",
        "redis_timeout_ms", "segment_bytes", "redis_projector_processes", mode="before",
    )  # fmt: skip
    @classmethod
    def _whole_number(cls, value: Any) -> Any:
        # A TOML `true` is an int to pydantic (partitions = true would fix P at 1 for
        # good), and `2.0` a whole float: a count or a port is written as a number.
        if isinstance(value, (bool, float)):
            raise ValueError("must be a whole number")
        return value

    @field_validator("data_dir", mode="before")
    @classmethod
    def _dir_named(cls, value: Any) -> Any:
        # An empty TRADELOG_DATA_DIR= would quietly be the current directory.
        if isinstance(value, str) and not value.strip():
            raise ValueError("must name a directory (it is empty)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _url_parses(cls, value: str) -> str:
        # Checked here, not at the first connection: a daemon would fail later, with a
        # traceback that names no setting.
        if value:
            # redis-py's own messages quote parts of the URL, a password's among them.
            shape = "redis://[[user]:password@]host[:port][/db], rediss://… or unix://path"
            try:
                parse_url(value)  # type: ignore[no-untyped-call]
            except ValueError:
                raise ValueError(f"not a Redis URL of the shape {shape}") from None
            parts = urlsplit(value)
            db = unquote(parts.path).replace("/", "") if parts.scheme != "unix" else ""
            if db and not db.isdigit():  # (redis-py would quietly take database 0)
                raise ValueError("its database (the path after the host) must be a number")
        return value

    @property
    def redis_where(self) -> str:
        """The Redis URL without its password, to be shown."""
        parts = urlsplit(self.redis_url)
        if parts.password is None:
            return self.redis_url
        netloc = parts.netloc.rpartition("@")[2]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return urlunsplit(parts._replace(netloc=user + netloc))

    @model_validator(mode="after")
    def _phase_has_redis(self) -> Settings:
        if self.phase > 1 and not self.redis_url:
            raise ValueError(
                f"TRADELOG_PHASE: phase {self.phase} reads from Redis, but TRADELOG_REDIS_URL "
                "is empty (Redis disabled)"
            )
        return self

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, (list, tuple)):
            # An empty key (`api_keys = [""]` in TOML) would let an empty X-API-Key in.
            return tuple(
                k.strip() if isinstance(k, str) else k  # not a string: refused by the type
                for k in value
                if not isinstance(k, str) or k.strip()
            )
        return value

    @property
    def redis_enabled(self) -> bool:
        return bool(self.redis_url)

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "negotiations"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if _toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=_toml_path))
        return tuple(sources)


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings once; raise SettingsError naming the first bad setting."""
    global _toml_path
    path = config or os.environ.get("TRADELOG_CONFIG") or None
    if path is not None and not Path(path).is_file():
        what = "a directory, not a TOML file" if Path(path).is_dir() else "no such file"
        raise SettingsError(f"TRADELOG_CONFIG: {what}: {path}")
    _toml_path = Path(path) if path else None
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as e:
        err = e.errors()[0]
        if not err["loc"]:  # a check across settings: its message names them
            raise SettingsError(str(err["msg"]).removeprefix("Value error, ")) from e
        name = str(err["loc"][0])
        if err["type"] == "extra_forbidden":  # only a file can hold an unknown name
            raise SettingsError(f"TRADELOG_CONFIG: {path}: unknown setting {name!r}") from e
        got = "" if name in _SECRET else f" (got {err.get('input')!r})"
        msg = str(err["msg"]).removeprefix("Value error, ")  # a check of ours says it all
        raise SettingsError(f"TRADELOG_{name.upper()}: {msg}{got}") from e
    except ValueError as e:  # a TOML file that does not parse
        raise SettingsError(f"TRADELOG_CONFIG: {path}: {e}") from e
    finally:
        _toml_path = None
