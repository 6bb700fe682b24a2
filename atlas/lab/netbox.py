"""The lab's NetBox: the real server from PyPI, with a private PostgreSQL cluster and Redis.

`netbox migrate` costs about four minutes of CPU, so the first lab on a machine migrates once and
keeps a dump of the migrated database in the cache, keyed by NetBox version; every later lab
restores that dump in about a second.
"""

from __future__ import annotations

import http.client
import shutil
import sys
import urllib.request
from pathlib import Path

from atlas.lab import procs
from atlas.lab.config import CACHE_ROOT, LabConfig
from atlas.lab.credentials import LabSecrets

NETBOX_VERSION = "4.7.3"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
DB_NAME = "netbox"

_CONFIGURATION = """\
DATABASES = {{'default': {{'ENGINE': 'django.db.backends.postgresql', 'NAME': {db!r}, 'USER': 'netbox',
    'PASSWORD': 'netbox', 'HOST': '127.0.0.1', 'PORT': '{pg_port}', 'CONN_MAX_AGE': 300,
    'CONN_HEALTH_CHECKS': True}}}}
REDIS = {{'tasks': {{'HOST': '127.0.0.1', 'PORT': {redis_port}, 'DATABASE': 0, 'SSL': False}},
         'caching': {{'HOST': '127.0.0.1', 'PORT': {redis_port}, 'DATABASE': 1, 'SSL': False}}}}
ALLOWED_HOSTS = ['127.0.0.1', 'localhost']
SECRET_KEY = {secret_key!r}
API_TOKEN_PEPPERS = {{1: {pepper!r}}}
CENSUS_REPORTING_ENABLED = False
ISOLATED_DEPLOYMENT = True
RELEASE_CHECK_URL = None
"""

_BOOTSTRAP = """\
from users.models import User, Token
u, _ = User.objects.get_or_create(username='admin', defaults={{'is_superuser': True, 'is_active': True}})
u.set_password({password!r}); u.save()
Token.objects.exclude(key={key!r}).delete()
if not Token.objects.filter(key={key!r}).exists():
    t = Token(user=u, version=2, key={key!r}, token={secret!r}, description='atlas')
    t.full_clean(); t.save()
"""


class NetBoxLab:
    def __init__(self, cfg: LabConfig, secrets: LabSecrets) -> None:
        self.cfg = cfg
        self.secrets = secrets
        self.cache = CACHE_ROOT / f"netbox-{NETBOX_VERSION}"
        self.venv = self.cache / "venv"
        self.template = self.cache / "migrated.dump"
        self.base = cfg.dir / "netbox"
        self.pgdata = self.base / "pg"
        self.root = self.base / "instance"
        self.logs = cfg.dir / "log"
        self.run = cfg.dir / "run"

    # --- install -----------------------------------------------------------------------------
    def ensure_venv(self) -> None:
        marker = self.venv / ".atlas-installed"
        if marker.exists():
            return
        python = Path(sys.base_prefix) / "bin" / "python3.12"
        if self.venv.exists():
            shutil.rmtree(self.venv)
        self.cache.mkdir(parents=True, exist_ok=True)
        procs.run(["uv", "venv", "-q", "--python", str(python), str(self.venv)], "creating NetBox venv")
        procs.run(
            [
                "uv",
                "pip",
                "install",
                "-q",
                "--python",
                str(self.venv / "bin" / "python"),
                f"netbox=={NETBOX_VERSION}",
            ],
            f"installing netbox {NETBOX_VERSION}",
        )
        marker.write_text(NETBOX_VERSION + "\n")

    def _env(self) -> dict[str, str]:
        return {"NETBOX_ROOT": str(self.root), "HOME": str(self.base)}

    def write_config(self) -> None:
        conf = self.root / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "__init__.py").touch()
        (conf / "configuration.py").write_text(
            _CONFIGURATION.format(
                db=DB_NAME,
                pg_port=self.cfg.ports.postgres,
                redis_port=self.cfg.ports.redis,
                secret_key=self.secrets.netbox_secret_key,
                pepper=self.secrets.netbox_pepper,
            )
        )
        (conf / "configuration.py").chmod(0o600)

    # --- postgres ----------------------------------------------------------------------------
    def _client(self, tool: str, user: str) -> list[str]:
        return [tool, "-h", "127.0.0.1", "-p", str(self.cfg.ports.postgres), "-U", user]

    def _as_postgres(self, *argv: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv]

    def _psql(self, sql: str, db: str = "postgres") -> str:
        out = procs.run(
            [
                *self._client("psql", "postgres"),
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-tAc",
                sql,
            ],
            f"psql {sql[:40]!r}",
        )
        return out.stdout.strip()

    def postgres_pid(self) -> int | None:
        return procs.running(self.pgdata / "postmaster.pid", "postgres")

    def start_postgres(self) -> None:
        if self.postgres_pid() is not None:
            return
        self.base.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        if not (self.pgdata / "PG_VERSION").exists():
            self.pgdata.mkdir(parents=True, exist_ok=True)
            shutil.chown(self.pgdata, "postgres", "postgres")
            procs.run(
                self._as_postgres(
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ),
                "initdb",
            )
        # A postmaster killed hard leaves its lock files behind; where init does not reap orphans its PID
        # stays a zombie, which PostgreSQL's own stale-lock check takes for a live server.
        for lock in ("postmaster.pid", f".s.PGSQL.{self.cfg.ports.postgres}.lock"):
            (self.pgdata / lock).unlink(missing_ok=True)
        log = self.logs / "postgres.log"
        log.touch()
        shutil.chown(log, "postgres", "postgres")
        # The lab's data is rebuilt from topology files; durability is traded for speed.
        options = (
            f"-p {self.cfg.ports.postgres} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.pgdata}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        procs.run(
            self._as_postgres(
                str(PG_BIN / "pg_ctl"), "-D", str(self.pgdata), "-l", str(log), "-w", "-o", options, "start"
            ),
            "starting PostgreSQL",
            env=self.cfg.process_env(),
        )

    def stop_postgres(self) -> bool:
        if self.postgres_pid() is None:
            return False
        procs.run(
            self._as_postgres(
                str(PG_BIN / "pg_ctl"), "-D", str(self.pgdata), "-m", "immediate", "-w", "stop"
            ),
            "stopping PostgreSQL",
        )
        return True

    def ensure_app_database(self, name: str, password: str) -> None:
        """A role and a database of that name for another lab server (Prefect), kept across resets."""
        if not self._psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{name}'"):
            self._psql(f"CREATE USER {name} WITH PASSWORD '{password}'")
        if self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
            self._psql(f"CREATE DATABASE {name} OWNER {name}")

    def database_exists(self) -> bool:
        return self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'") == "1"

    def ensure_database(self, snapshot: Path | None = None) -> str:
        """Makes sure the lab's database exists; says how: "existing", "snapshot" (restored from
        `snapshot`, a dump of an earlier import of the same topology) or "template" (migrated, empty)."""
        if self.database_exists():
            if self._database_complete():
                return "existing"
            if not self.template.exists():
                # a first migration cut short (a timeout, a killed process): Django goes on from the
                # last migration it recorded
                self._migrate_and_keep_template()
                self._bootstrap_admin()
                return "template"
            # a restore cut short: start over from the dump
            self._psql(f"DROP DATABASE {DB_NAME} WITH (FORCE)")
        if not self._psql("SELECT 1 FROM pg_roles WHERE rolname = 'netbox'"):
            self._psql("CREATE USER netbox WITH PASSWORD 'netbox' CREATEDB")
        self._psql(f"CREATE DATABASE {DB_NAME} OWNER netbox")
        source = snapshot if snapshot is not None and snapshot.exists() else None
        if source is None and not self.template.exists():
            self._migrate_and_keep_template()
        else:
            dump = source or self.template
            procs.run(
                [
                    *self._client("pg_restore", "netbox"),
                    "-d",
                    DB_NAME,
                    "--no-owner",
                    "-j",
                    "2",
                    str(dump),
                ],
                f"restoring NetBox's database from {dump.name}",
            )
        self._bootstrap_admin()
        return "snapshot" if source is not None else "template"

    def _database_complete(self) -> bool:
        """Migrated or restored, with its admin: the last step of making it."""
        try:
            return self._psql("SELECT 1 FROM users_user WHERE username = 'admin'", db=DB_NAME) == "1"
        except procs.StartError:  # no such table: the migration never got that far
            return False

    def drop_database(self) -> None:
        procs.stop_pidfile(self.run / "netbox.pid", "runserver")
        self._psql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")

    def keep_snapshot(self, snapshot: Path) -> None:
        """Dumps the database so the next lab with the same topology skips the import. The dump holds
        this lab's admin password hash and token digest; a restore replaces both (`_bootstrap_admin`)."""
        snapshot.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = snapshot.with_suffix(".partial")
        self._dump(partial, "dumping the imported database")
        partial.chmod(0o600)
        partial.rename(snapshot)

    def _migrate_and_keep_template(self) -> None:
        procs.run(
            [str(self.venv / "bin" / "netbox"), "migrate", "--no-input"],
            "netbox migrate",
            env=self._env(),
            # about four minutes of CPU alone; far more on two cores shared with a root filesystem's build
            timeout=2400,
        )
        partial = self.template.with_suffix(".partial")
        self._dump(partial, "dumping the migrated database")
        partial.rename(self.template)

    def _dump(self, path: Path, what: str) -> None:
        procs.run(
            [
                *self._client("pg_dump", "postgres"),
                "-Fc",
                "-f",
                str(path),
                DB_NAME,
            ],
            what,
        )

    def _bootstrap_admin(self) -> None:
        script = _BOOTSTRAP.format(
            password=self.secrets.netbox_admin_password,
            key=self.secrets.netbox_token_key,
            secret=self.secrets.netbox_token_secret,
        )
        procs.run(
            [str(self.venv / "bin" / "netbox"), "shell", "-c", script],
            "creating the NetBox admin and API token",
            env=self._env(),
        )

    # --- redis + server ----------------------------------------------------------------------
    def start_redis(self) -> None:
        pidfile = self.run / "redis.pid"
        if procs.running(pidfile, "redis-server") is not None:
            return
        self.run.mkdir(parents=True, exist_ok=True)
        (self.base / "redis").mkdir(parents=True, exist_ok=True)
        procs.spawn(
            [
                "redis-server",
                "--port",
                str(self.cfg.ports.redis),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.base / "redis"),
            ],
            pidfile,
            self.logs / "redis.log",
            env=self.cfg.process_env(),
        )

    def server_pid(self) -> int | None:
        return procs.running(self.run / "netbox.pid", "runserver")

    def start_server(self) -> None:
        pid = self.server_pid()
        if pid is None:
            # runserver --insecure serves the UI's static files straight from the package; gunicorn
            # would need a web server in front for them.
            pid = procs.spawn(
                [
                    str(self.venv / "bin" / "netbox"),
                    "runserver",
                    f"127.0.0.1:{self.cfg.ports.netbox}",
                    "--noreload",
                    "--insecure",
                ],
                self.run / "netbox.pid",
                self.logs / "netbox.log",
                env=self._env() | self.cfg.process_env(),
            )
        procs.wait_for(self.healthy, "NetBox", timeout=120, log=self.logs / "netbox.log", pid=pid)

    def healthy(self) -> bool:
        request = urllib.request.Request(
            f"{self.cfg.netbox_url}/api/status/",
            headers={"Authorization": f"Bearer {self.secrets.netbox_token}", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return bool(response.status == 200)
        except (OSError, http.client.HTTPException):
            return False

    def up(self, snapshot: Path | None = None) -> str:
        """Starts NetBox and its stores; returns how the database came to be (see ensure_database)."""
        self.ensure_venv()
        self.write_config()
        self.start_postgres()
        self.start_redis()
        how = self.ensure_database(snapshot)
        self.start_server()
        return how

    def down(self) -> list[str]:
        stopped = []
        if procs.stop_pidfile(self.run / "netbox.pid", "runserver"):
            stopped.append("netbox")
        if procs.stop_pidfile(self.run / "redis.pid", "redis-server"):
            stopped.append("redis")
        if self.stop_postgres():
            stopped.append("postgres")
        return stopped
