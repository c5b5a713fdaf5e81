"""A throwaway PostgreSQL cluster on loopback for the tests that need a real database server (the shared
tracking server, a sweep's shared Optuna storage): Debian's `postgresql` binaries, `initdb` in a temp dir,
bound to 127.0.0.1 only. Import the `postgres` fixture from here; skip with PG_MISSING when PG_BIN is None.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests import e2e

DB_OWNER = "postgres"  # the OS user that runs the cluster when the tests run as root
# The machine's temp folder, read at collection, before conftest points TMPDIR into pytest's private basetemp
SYSTEM_TEMP = tempfile.gettempdir()
PG_MISSING = (
    "PostgreSQL server binaries (initdb, postgres, pg_ctl) not found under /usr/lib/postgresql/*/bin or on PATH; "
    "`make system-deps` installs Debian's postgresql package"
)


def _pg_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin (Debian) or PATH directory with initdb, postgres, pg_ctl."""
    version = lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()]  # noqa: E731
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version)
    on_path = [Path(found).parent for found in [shutil.which("initdb")] if found]
    usable = [d for d in debian[::-1] + on_path if all((d / n).is_file() for n in ("initdb", "postgres", "pg_ctl"))]
    return usable[0] if usable else None


PG_BIN = _pg_bin()


def _as_db_owner(command: list[str]) -> list[str]:
    """postgres refuses to run as root: as root, run `command` as the postgres user."""
    return ["runuser", "-u", DB_OWNER, "--", *command] if os.geteuid() == 0 else command


@dataclasses.dataclass
class Postgres:
    port: int
    password: str  # of the superuser `postgres` and of the `mlflow` role

    def connect(self, database: str = "postgres"):
        """An autocommit connection as the superuser, over TCP with the password."""
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=self.password,
            dbname=database,
            connect_timeout=5,
            autocommit=True,
        )

    def execute(self, sql, *args, database: str = "postgres") -> list[tuple]:
        """One autocommitted statement (CREATE DATABASE cannot run in a transaction); returns its rows."""
        with self.connect(database) as connection, connection.cursor() as cursor:
            cursor.execute(sql, args or None)
            return cursor.fetchall() if cursor.description else []

    def create_role(self, name: str) -> None:
        """A login role with the cluster's password (DDL takes no bound parameters: quoted client-side)."""
        from psycopg import sql

        self.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(self.password))
        )

    def create_database(self, name: str) -> str:
        """A database owned by the `mlflow` role; returns its SQLAlchemy URL."""
        from psycopg import sql

        self.execute(sql.SQL("CREATE DATABASE {} OWNER mlflow").format(sql.Identifier(name)))
        return f"postgresql://mlflow:{self.password}@127.0.0.1:{self.port}/{name}"

    def accepts_connections(self) -> bool:
        import psycopg

        try:
            self.connect().close()
        except psycopg.OperationalError:
            return False
        return True


def _initdb(home: Path, password: str) -> Path:
    """A fresh cluster in home/data with password (scram) authentication for TCP and socket clients."""
    (home / "pwfile").write_text(password + "\n")
    data = home / "data"
    command = [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={home / 'pwfile'}"]
    command += ["--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-sync"]
    done = subprocess.run(_as_db_owner(command), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (home / "pwfile").unlink()
    return data


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1:<free port>, with a login role `mlflow`.

    Its directory is in the machine's temp folder, not under tmp_path: pytest's temp root is private to the user
    running the tests (0700), which the postgres user cannot enter when the tests run as root; the unix socket
    path must also stay under 107 bytes.
    """
    home = Path(tempfile.mkdtemp(prefix="bertcls-pg-", dir=SYSTEM_TEMP))
    server = None
    try:
        if os.geteuid() == 0:
            shutil.chown(home, DB_OWNER)
        cluster = Postgres(e2e.free_port(), secrets.token_urlsafe(16))
        data = _initdb(home, cluster.password)
        log = home / "postgres.log"
        command = [str(PG_BIN / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(cluster.port)]
        command += ["-k", str(home), "-c", "fsync=off"]  # a test cluster: durability is not the point
        with log.open("w") as out:
            server = subprocess.Popen(
                _as_db_owner(command), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        e2e.wait_until(cluster.accepts_connections, server, log, "postgres", timeout_s=60)
        cluster.create_role("mlflow")
        yield cluster
    finally:
        if server is not None:
            stop = _as_db_owner([str(PG_BIN / "pg_ctl"), "stop", "-D", str(home / "data"), "-m", "fast", "-w"])
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                subprocess.run(stop + ["-t", "30"], capture_output=True, timeout=60)
            e2e.stop_process(server)
        shutil.rmtree(home, ignore_errors=True)
