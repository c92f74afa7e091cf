"""A throwaway PostgreSQL server for tests and benchmarks: Debian's own binaries (package
`postgresql`, installed by ./dev), a fresh cluster in a temporary directory, loopback only.

The cluster lives under the system temp dir, not the cache dir: PostgreSQL refuses to run as
root, so as root it runs as the `postgres` user, who cannot enter root's home. It is made with
fsync off (a test server; nothing in it must survive) and removed on `close()`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from devtools.ports import free_tcp_port

ROOT_BIN = Path("/usr/lib/postgresql")
SUPERUSER = "phoneagent"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here (install Debian's `postgresql`, as ./dev does)."""


def server_bin() -> Path:
    """The bin directory of the newest installed PostgreSQL major version."""
    versions = sorted((p for p in ROOT_BIN.glob("*/bin") if (p / "pg_ctl").exists()),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not versions:
        raise PostgresUnavailable(f"no PostgreSQL server under {ROOT_BIN}: apt-get install postgresql (./dev does)")
    return versions[-1]



class Postgres:
    """One server. `start()` and `stop()` may be called again (a test stops the database under
    a live service and brings it back); `url(db)` is a SQLAlchemy URL; `create_database()`
    gives each test its own empty database."""

    def __init__(self, listen: str = "127.0.0.1") -> None:
        """`listen`: the address it serves on (another host's database: an address on a test network)."""
        self.listen = listen
        self.bin = server_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="phoneagent-pg-"))
        self.data = self.dir / "data"
        self.port = free_tcp_port(listen)
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._pg(["initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"])
        if listen != "127.0.0.1":  # the hosts of the test network (initdb trusts only loopback)
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write("host all all samenet trust\n")
        self.running = False

    def _pg(self, argv: list[str]) -> None:
        run = [*self._as, str(self.bin / argv[0]), *argv[1:]]
        done = subprocess.run(run, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        options = f"-c listen_addresses={self.listen} -p {self.port} -k {self.dir} -c fsync=off -c full_page_writes=off"
        self._pg(["pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-o", options, "-w", "-t", "60", "start"])
        self.running = True

    def stop(self) -> None:
        """Stop at once (`-m fast`: open connections are cut, as when a database host goes away)."""
        if self.running:
            self._pg(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])
            self.running = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{self.listen}:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host={self.listen} port={self.port} user={SUPERUSER} dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Postgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
