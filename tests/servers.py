"""Engines and servers the tests start and stop themselves: a Spark session in local mode, and a
PostgreSQL cluster of their own in a temporary folder (Debian's PostgreSQL binaries; ``initdb`` and
``pg_ctl``), run as the ``postgres`` user when the tests run as root (PostgreSQL refuses root)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def postgres_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on the PATH, else Debian's newest
    /usr/lib/postgresql/<version>/bin; None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[-3]))
    return Path(versions[-1]).parent if versions else None


def postgres_missing() -> str | None:
    """Why no PostgreSQL cluster can be started here, or None."""
    if postgres_bin() is None:
        return "PostgreSQL is not installed (no initdb/pg_ctl; Debian: apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run PostgreSQL as"
    try:
        import psycopg2  # noqa: F401
        import dagster_postgres  # noqa: F401
    except ImportError:
        return "dagster-postgres is not installed (pip install -e '.[postgres]')"
    return None


def spark_missing() -> str | None:
    """Why no Spark session can be started here, or None."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime for Spark (Debian: apt-get install openjdk-17-jre-headless)"
    try:
        import pyspark  # noqa: F401
        import rapidfuzz  # noqa: F401
        import sqlglot  # noqa: F401
    except ImportError:
        return "the spark extra is not installed (pip install -e '.[spark]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_postgres(database: str = "dagster") -> Iterator[dict[str, str]]:
    """A PostgreSQL cluster on a free port of 127.0.0.1 with an empty ``database``, trust
    authentication for its user ``crm``; yields the DAGSTER_PG_* variables that reach it and
    stops the cluster (and removes its folder) afterwards."""
    import psycopg2

    binary = postgres_bin()
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="crm-pg-"))
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(root, pg.pw_uid, pg.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    ctl = [*as_user, str(binary / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run([*as_user, str(binary / "initdb"), "-D", str(data), "-U", "crm", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, text=True)
        subprocess.run([*ctl, "-l", str(root / "server.log"), "-w", "-t", "60", "-o",
                        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True, text=True)
        con = psycopg2.connect(host="127.0.0.1", port=port, user="crm", dbname="postgres")
        con.autocommit = True
        con.cursor().execute(f"CREATE DATABASE {database}")
        con.close()
        yield {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_USERNAME": "crm",
               "DAGSTER_PG_DB": database}
    except subprocess.CalledProcessError as e:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {e.stderr}\n{log[-2000:]}") from e
    finally:
        subprocess.run([*ctl, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
