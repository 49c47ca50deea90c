"""Where the store, broker and blobs live, read from the environment.

Everything defaults to files under one home folder (``./var``) so that the demo needs no service; one
variable each switches the catalog to PostgreSQL and the broker to Redis. This module stays free of heavy
imports: the UI and the command line read it at start-up.
"""
from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class StoreConfig:
    """Where the store lives. ``app_url`` is the catalog's own URL on PostgreSQL; on SQLite it is a file
    of its own (see :func:`load_settings` for why)."""

    catalog_url: str
    data_path: str
    app_url: str


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_bool(name: str, default: bool) -> bool:
    value = _env(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    home: Path
    catalog_url: str  # sqlite:///… or postgresql://…: the DuckLake catalog
    data_path: str  # where DuckLake writes its Parquet files
    app_url: str  # the app tables (jobs, users): the catalog's PostgreSQL database, or a SQLite file of their own
    blob_path: Path  # content-addressed copies of every ingested image; with blobs in S3, their local cache
    broker_url: str
    result_backend: str
    image_roots: tuple[Path, ...] = ()  # if set, the only folders local images may come from
    lease_seconds: float = 60.0  # a unit whose worker stops renewing for this long is taken back
    max_unit_attempts: int = 3
    redact: bool = True
    user: str = field(default_factory=getpass.getuser)
    blob_url: str = ""  # VITPRO_BLOB_PATH as given: a folder, or s3://bucket/prefix
    blob_cache_bytes: int = 2 << 30  # the cap on a machine's cache of blobs read from S3
    out_root: str = ""  # where exports, runs and evaluations go by default: a folder or s3://bucket/prefix
    ui_warm_seconds: float = 2.0  # how often the web server looks for a commit to warm its caches after (0: never)
    sign_in_delay_seconds: float = 1.0  # after the free failed sign-ins, the next try waits this, then twice as long, ...
    ui_live_seconds: float = 10.0  # how often live views (Gallery tiles, pilot results and adjudication) look for others' work

    def __post_init__(self) -> None:
        if not self.blob_url:
            object.__setattr__(self, "blob_url", str(self.blob_path))
        if not self.out_root:
            object.__setattr__(self, "out_root", str(self.home))

    def output(self, kind: str, name: str) -> str:
        """The default place of an export (``exports``), a training run (``runs``) or an evaluation (``evals``)."""
        if self.out_root.startswith("s3://"):
            return self.out_root.rstrip("/") + f"/{kind}/{name}"
        return str(Path(self.out_root) / kind / name)

    @property
    def store(self) -> StoreConfig:
        return StoreConfig(self.catalog_url, self.data_path, self.app_url)

    @property
    def heartbeat_seconds(self) -> float:
        return max(0.2, self.lease_seconds / 3)

    @property
    def is_embedded_broker(self) -> bool:
        return self.broker_url.startswith(("sqla+", "sqlalchemy+"))

    def describe(self) -> dict[str, str]:
        """What to print to a user: no passwords."""
        return {
            "home": str(self.home),
            "catalog": _hide_password(self.catalog_url),
            "app tables": _hide_password(self.app_url),
            "data path": self.data_path,
            "blobs": self.blob_url + (f" (cached in {self.blob_path})" if self.blob_url.startswith("s3://") else ""),
            "outputs": self.out_root,
            "broker": _hide_password(self.broker_url),
            "result backend": _hide_password(self.result_backend),
        }


def _hide_password(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"


def load_settings() -> Settings:
    """Read the settings from ``VITPRO_*`` environment variables (docs/reference/configuration.md lists them)."""
    home = Path(_env("VITPRO_HOME", "var")).expanduser().resolve()
    catalog = _env("VITPRO_CATALOG", f"sqlite:///{home / 'catalog.sqlite'}")
    # Embedded mode keeps the app tables out of the catalog's SQLite file: DuckDB carries its own copy of
    # SQLite, and two SQLite libraries on one file in one process break SQLite's locking (stale reads were
    # seen here; sqlite.org lists it as a way to corrupt a database). PostgreSQL has no such problem.
    app_default = catalog if catalog.startswith("postgres") else f"sqlite:///{home / 'app.sqlite'}"
    app_url = _env("VITPRO_APP_DB", app_default)
    data_path = _env("VITPRO_DATA_PATH", str(home / "lake"))
    if "://" not in data_path:
        data_path = str(Path(data_path).expanduser().resolve())
    if not data_path.endswith("/"):
        data_path += "/"
    blob_url = _env("VITPRO_BLOB_PATH", str(home / "blobs"))
    # Blobs in S3 are read through a cache on this machine's own disk; a local blob folder is its own cache.
    blobs = home / "cache" / "blobs" if blob_url.startswith("s3://") else Path(blob_url).expanduser().resolve()
    out_root = _env("VITPRO_OUT_PATH", str(home))
    if not out_root.startswith("s3://"):
        out_root = str(Path(out_root).expanduser().resolve())
    broker = _env("VITPRO_BROKER", f"sqla+sqlite:///{home / 'broker.sqlite'}")
    default_backend = (
        broker if broker.startswith(("redis://", "rediss://")) else f"db+sqlite:///{home / 'results.sqlite'}"
    )
    backend = _env("VITPRO_RESULT_BACKEND", default_backend)
    roots = tuple(
        Path(p).expanduser().resolve() for p in (_env("VITPRO_IMAGE_ROOTS", "") or "").split(os.pathsep) if p
    )
    return Settings(
        home=home,
        catalog_url=catalog,
        data_path=data_path,
        app_url=app_url,
        blob_path=blobs,
        blob_url=blob_url if blob_url.startswith("s3://") else str(blobs),
        blob_cache_bytes=int(float(_env("VITPRO_BLOB_CACHE_MB", "2048")) * (1 << 20)),
        out_root=out_root,
        ui_warm_seconds=float(_env("VITPRO_UI_WARM_SECONDS", "2")),
        sign_in_delay_seconds=max(0.1, float(_env("VITPRO_SIGN_IN_DELAY_SECONDS", "1"))),
        ui_live_seconds=max(1.0, float(_env("VITPRO_UI_LIVE_SECONDS", "10"))),
        broker_url=broker,
        result_backend=backend,
        image_roots=roots,
        lease_seconds=float(_env("VITPRO_LEASE_SECONDS", "60")),
        max_unit_attempts=int(_env("VITPRO_MAX_ATTEMPTS", "3")),
        redact=_env_bool("VITPRO_REDACT", True),
        user=_env("VITPRO_USER") or getpass.getuser(),
    )
