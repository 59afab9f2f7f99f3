"""A private PostgreSQL for the deployment tests' Prefect server: Debian's ``postgresql``
binaries (``.ci/run`` installs them), a throwaway cluster in a temporary folder of its own,
listening on 127.0.0.1 with a password, stopped and removed when the tests end."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import free_port

# PostgreSQL refuses to run as root; Debian's package creates this user.
SERVICE_USER = "postgres"
DATABASE = "prefect"
ROLE = "prefect"


def binaries() -> Path | None:
    """The folder of ``initdb``/``pg_ctl``: Debian keeps them out of PATH, per version."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


def _as_service_user() -> list[str]:
    """The prefix that runs a command as a user PostgreSQL accepts (itself, unless root)."""
    if os.geteuid() != 0:
        return []
    pwd.getpwnam(SERVICE_USER)  # KeyError: the package that creates it is not installed
    return ["runuser", "-u", SERVICE_USER, "--"]


def _run(prefix: list[str], *args: str | Path) -> None:
    done = subprocess.run([*prefix, *map(str, args)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")


@contextmanager
def postgres() -> Iterator[str]:
    """A running PostgreSQL with database ``prefect`` owned by role ``prefect``; yields the
    SQLAlchemy URL Prefect's ``server.database.connection_url`` takes."""
    bin_dir = binaries()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
    prefix = _as_service_user()
    # Not under pytest's temporary folder: as root that is closed to the service user.
    with tempfile.TemporaryDirectory(prefix="mlops-postgres-") as folder:
        yield from _cluster(bin_dir, prefix, Path(folder))


def _cluster(bin_dir: Path, prefix: list[str], root: Path) -> Iterator[str]:
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir(mode=0o700)  # local connections are trusted: only its owner gets in
    password = secrets.token_hex(16)
    secret = root / "password"
    secret.write_text(password + "\n")
    if prefix:
        owner = pwd.getpwnam(SERVICE_USER)
        for path in (root, sockets, secret):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    # The superuser is the role Prefect uses: it owns its database and nothing else runs here.
    _run(
        prefix,
        bin_dir / "initdb",
        "--pgdata", data,
        "--username", ROLE,
        "--pwfile", secret,
        "--auth-host", "scram-sha-256",
        "--auth-local", "trust",
        "--encoding", "UTF8",
        "--no-instructions",
    )  # fmt: skip
    port = free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off"
    # With a log file of its own: the server must not hold our pipes open.
    log = root / "postgres.log"
    _run(prefix, bin_dir / "pg_ctl", "-D", data, "-o", options, "-l", log, "--wait", "start")
    try:
        _run(prefix, bin_dir / "createdb", "-h", sockets, "-p", str(port), "-U", ROLE, DATABASE)
        yield f"postgresql+asyncpg://{ROLE}:{password}@127.0.0.1:{port}/{DATABASE}"
    finally:
        _run(prefix, bin_dir / "pg_ctl", "-D", data, "--mode", "fast", "--wait", "stop")
