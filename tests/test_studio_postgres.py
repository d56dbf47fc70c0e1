"""The studio on a real PostgreSQL server (Debian's postgresql, which .ci/run installs): the schema is
made and versioned there, and two studios sharing the database see each other's answers."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("psycopg")
pytest.importorskip("fastapi")
BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
pytestmark = pytest.mark.skipif(not BIN, reason="needs Debian's postgresql (apt-get install postgresql; .ci/run "
                                                "installs it)")


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres_url():
    bin_dir = Path(BIN[-1])
    root = Path(tempfile.mkdtemp(prefix="ganforge-pg-", dir="/tmp"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                                 f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1", "start"]),
                   check=True, capture_output=True)
    yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]), capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def test_schema_and_answers_on_postgresql(postgres_url, tmp_path):
    from sqlalchemy import select
    from starlette.testclient import TestClient

    from ganforge.studio import db
    from ganforge.studio.app import create_app

    sessions = db.open_database(postgres_url)
    engine = sessions.kw["bind"]
    assert engine.dialect.name == "postgresql" and db.schema_version(engine) == db.SCHEMA_VERSION
    assert db.migrate(engine) == db.SCHEMA_VERSION  # a second start applies nothing
    with sessions.begin() as s:
        s.add(db.Round(id="r1", model="m", real_side="left", real_index=3, seed=7, player="p"))
    with sessions.begin() as s:
        s.add(db.Answer(round_id="r1", model="m", player="p", picked="right", correct=False, seconds=1.0))
    # two studios (two folders, one shared database) see the same answers
    first = TestClient(create_app(tmp_path / "a", database=postgres_url, run_jobs=False), client=("127.0.0.1", 1))
    second = create_app(tmp_path / "b", database=postgres_url, run_jobs=False)
    with second.state.studio.sessions() as s:
        answers = list(s.scalars(select(db.Answer).where(db.Answer.model == "m")))
    assert [(a.picked, a.correct) for a in answers] == [("right", False)]
    assert first.get("/api/models").status_code == 200
    with pytest.raises(db.DatabaseError, match="Cannot open"):
        db.open_database(postgres_url.replace("/postgres", "/nosuchdatabase"))
