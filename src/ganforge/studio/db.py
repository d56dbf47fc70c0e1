"""The studio's records: model settings, which-is-real rounds and answers, the lineage of every image
made, and training jobs. SQLite in the studio folder by default (WAL: several readers beside one
writer, safe with several workers); any SQLAlchemy URL with `--database` (postgresql://... for a shared
deployment). The schema is versioned: `open_database` applies the migrations a database lacks, in
order, and refuses a database from a newer ganforge.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, create_engine, event, inspect,
                        select)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from ganforge.errors import GanforgeError

SCHEMA_VERSION = 1


class DatabaseError(GanforgeError, ValueError):
    pass


def now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "studio_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class ModelSetting(Base):
    """What the owner decided about a model: served to others (shareable), real images shown in the game."""

    __tablename__ = "model_settings"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    shareable: Mapped[bool] = mapped_column(Boolean, default=False)
    show_real: Mapped[bool] = mapped_column(Boolean, default=False)
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Round(Base):
    """One which-is-real round: a real training image and a generated one, in a random order."""

    __tablename__ = "rounds"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    real_side: Mapped[str] = mapped_column(String(5))  # "left" or "right"
    real_index: Mapped[int] = mapped_column(Integer)  # position in the training dataset
    seed: Mapped[int] = mapped_column(Integer)  # the generated image's seed
    player: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Answer(Base):
    __tablename__ = "answers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    round_id: Mapped[str] = mapped_column(String(32), ForeignKey("rounds.id"), unique=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    player: Mapped[str] = mapped_column(String(64))
    picked: Mapped[str] = mapped_column(String(5))
    correct: Mapped[bool] = mapped_column(Boolean)  # False: the generated image fooled the player
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Made(Base):
    """An image made in the studio, with the recipe that makes it again and the images it came from."""

    __tablename__ = "images"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "seed", "child", "edit"
    recipe: Mapped[dict] = mapped_column(JSON)
    parents: Mapped[list] = mapped_column(JSON, default=list)  # ids of the images it came from
    kept: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Job(Base):
    """A background job (prepare, train, export): queued, running, stopped, done or failed."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    args: Mapped[dict] = mapped_column(JSON)
    run: Mapped[str | None] = mapped_column(String(256), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str] = mapped_column(String(2000), default="")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def _v1(connection) -> None:
    Base.metadata.create_all(connection)


MIGRATIONS: list[Callable] = [_v1]  # MIGRATIONS[k] takes a database from version k to k + 1
assert len(MIGRATIONS) == SCHEMA_VERSION


def database_url(folder: Path, url: str | None) -> str:
    return url or f"sqlite:///{folder / 'studio.db'}"


def open_database(url: str) -> sessionmaker[Session]:
    """An engine for `url` with the schema migrated to this version; sessions from the returned factory."""
    try:
        engine = create_engine(url, future=True, pool_pre_ping=True)
    except Exception as err:  # a malformed URL or a missing driver: say which
        raise DatabaseError(f"Cannot use the database {url!r}: {err}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        migrate(engine)
    except DatabaseError:
        raise
    except Exception as err:
        raise DatabaseError(f"Cannot open the database {engine.url.render_as_string(hide_password=True)}: {err}") from None
    return sessionmaker(engine, expire_on_commit=False)


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cursor.execute("PRAGMA busy_timeout=5000")  # several workers: a writer waits, it does not fail
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def schema_version(engine: Engine) -> int:
    if not inspect(engine).has_table(Meta.__tablename__):
        return 0
    with engine.connect() as connection:
        row = connection.execute(select(Meta.value).where(Meta.key == "schema_version")).first()
    return int(row[0]) if row else 0


def migrate(engine: Engine) -> int:
    """Apply the migrations `engine`'s database lacks; returns the version it had."""
    had = schema_version(engine)
    if had > SCHEMA_VERSION:
        raise DatabaseError(f"The studio database is at schema version {had}, newer than this ganforge's "
                            f"({SCHEMA_VERSION}): upgrade ganforge, or use another --database.")
    for version in range(had, SCHEMA_VERSION):
        with engine.begin() as connection:
            MIGRATIONS[version](connection)
            Meta.__table__.create(connection, checkfirst=True)
            connection.execute(Meta.__table__.delete().where(Meta.key == "schema_version"))
            connection.execute(Meta.__table__.insert().values(key="schema_version", value=str(version + 1)))
    return had
