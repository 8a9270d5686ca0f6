"""The ``jingtan`` command line."""

import argparse
import asyncio
import getpass
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import difflib

import uvicorn
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from jingtan_api import jobs
from jingtan_api.accounts.jobs import expire_points
from jingtan_api.accounts.service import check_invariants
from jingtan_api.app import create_app
from jingtan_api.audit import service as audit
from jingtan_api.auth import service as auth_service
from jingtan_api.auth import tokens
from jingtan_api.auth.permissions import ADMIN
from jingtan_api.db import utcnow
from jingtan_api.demo import seed_demo
from jingtan_api.errors import DomainError, NotFound
from jingtan_api.graphql.assemble import build_schema
from jingtan_api.impact import cli as impact_cli
from jingtan_api.migrate import upgrade
from jingtan_api.observability import metrics
from jingtan_api.observability.ledger import ledger_counts, ledger_totals
from jingtan_api.progress import progress
from jingtan_api.persisted import check_documents, read_operations, register
from jingtan_api.plugins import scaffold
from jingtan_api.plugins.manager import discover_entry_points, load_plugins
from jingtan_api.redemptions.jobs import expire_redemptions
from jingtan_api.redemptions.service import check_invariants as check_redemptions
from jingtan_api.services import Services
from jingtan_api.settings import ConfigurationError, Settings, example_toml, load_settings
from jingtan_api.users import service as users

DEFAULT_SCHEMA_PATH = Path("schema/schema.graphql")
DEFAULT_OPERATIONS_DIR = Path("schema/operations")
DEFAULT_MANIFEST_PATH = Path("var/persisted-operations.json")


def _settings() -> Settings:
    return load_settings()


def default_settings() -> Settings:
    """Settings from defaults only (no environment, no file): what the exported SDL describes."""

    class _Defaults(Settings):
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, *args: Any, **kwargs: Any):
            return (init_settings,)

    return _Defaults()


def export_sdl(settings: Settings | None = None) -> str:
    app = create_app(settings or default_settings())
    return str(app.state.schema).rstrip() + "\n"


# --- commands ---------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings()
    workers = args.workers or settings.server.workers
    # Several workers share one metrics directory (prometheus multiprocess mode); set before they start.
    metrics_dir = metrics.prepare_multiprocess_dir() if workers > 1 else None
    try:
        uvicorn.run(
            "jingtan_api.app:create_app",
            factory=True,
            host=args.host or settings.server.host,
            port=args.port or settings.server.port,
            workers=workers,
            log_level=settings.log.level.lower(),
            access_log=False,
            timeout_graceful_shutdown=int(settings.operations.graceful_timeout_seconds),
        )
    finally:
        if metrics_dir is not None and metrics_dir.startswith(os.path.join(tempfile.gettempdir(), "jingtan-metrics-")):
            metrics.remove_multiprocess_dir(metrics_dir)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    upgrade(settings.database_url, args.revision)
    print(f"database migrated to {args.revision}: {_redact(settings.database_url)}")
    return 0


def _redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def cmd_schema(args: argparse.Namespace) -> int:
    sdl = export_sdl()
    path = Path(args.output)
    if args.action == "export":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sdl, encoding="utf-8")
        print(f"wrote {path} ({len(sdl.splitlines())} lines)")
        return 0
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if current != sdl:

        diff = difflib.unified_diff(current.splitlines(), sdl.splitlines(), str(path), "generated", lineterm="")
        print("\n".join(list(diff)[:80]))
        print(f"{path} is stale: run `make schema` (jingtan schema export)", file=sys.stderr)
        return 1
    print(f"{path} is up to date")
    return 0


async def _with_services(fn):
    services = Services.build(_settings())
    try:
        return await fn(services)
    finally:
        await services.db.dispose()


def cmd_create_admin(args: argparse.Namespace) -> int:
    password = args.password or os.environ.get("JINGTAN_ADMIN_PASSWORD")
    if not password:
        if not sys.stdin.isatty():
            print("give --password or JINGTAN_ADMIN_PASSWORD", file=sys.stderr)
            return 2
        password = getpass.getpass("Admin password: ")

    async def run(services):
        return await users.create_admin(
            services, email=args.email, phone=args.phone, password=password, display_name=args.name, now=utcnow()
        )

    user_id = asyncio.run(_with_services(run))
    print(f"admin created: user {user_id} ({args.email or args.phone})")
    return 0


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (e.g. a container without a passwd entry)
        return "unknown"


def cmd_create_api_token(args: argparse.Namespace) -> int:
    async def run(services):
        async def tx(conn):
            user_id = await users.find_user_id(conn, args.user)
            if user_id is None:
                raise NotFound(f"no user {args.user}")
            row = (await conn.execute(select(users.U).where(users.U.c.id == user_id))).one()
            scopes = tokens.validate_scopes(args.scopes.split(","), users.roles_of(row))
            admin_id = None
            if args.by is not None:
                admin_id = await users.find_user_id(conn, args.by)
                admin = (await conn.execute(select(users.U).where(users.U.c.id == admin_id))).one_or_none()
                if admin is None or ADMIN not in users.roles_of(admin) or admin.status != "ACTIVE":
                    raise NotFound(f"no active admin {args.by} / 没有该管理员")
            now = utcnow()
            token_id, secret = await tokens.create_api_token(
                conn, user_id=user_id, name=args.name, scopes=scopes,
                created_by=admin_id if admin_id != user_id else None, expires_at=None, now=now,
            )
            # Whoever runs the CLI now holds the user's credential: the trail starts here.
            details = auth_service.token_audit_details(token_id, args.name, scopes, None)
            details.update(via="cli", os_user=_os_user())
            await audit.record(conn, actor_user_id=admin_id, action="api_token.create_for_user", target_type="User",
                               target_id=user_id, details=details, now=now)
            return token_id, secret

        return await services.db.write(tx)

    token_id, secret = asyncio.run(_with_services(run))
    print(secret)
    return 0


def cmd_expire_points(args: argparse.Namespace) -> int:
    async def run(services):
        with progress("expire-points", total=1) as bar:
            out = await expire_points(services.db, now=services.clock(), lot_expiry_days=services.settings.points.lot_expiry_days)
            bar.advance(1, f"{out[0]} account(s)")
        return out

    accounts, points = asyncio.run(_with_services(run))
    print(json.dumps({"accounts": accounts, "points": points}))
    return 0


def cmd_expire_redemptions(args: argparse.Namespace) -> int:
    async def run(services):
        cfg = services.settings
        with progress("expire-redemptions", total=1) as bar:
            out = await expire_redemptions(
                services.db, now=services.clock(), lot_expiry_days=cfg.points.lot_expiry_days,
                refund_min_valid_days=cfg.offers.refund_min_valid_days,
            )
            bar.advance(1, f"{out[0]} redemption(s)")
        return out

    count, points = asyncio.run(_with_services(run))
    print(json.dumps({"redemptions": count, "points": points}))
    return 0


def cmd_ledger_check(args: argparse.Namespace) -> int:
    steps = ["ledger invariants", "redemption invariants", *(["totals"] if args.totals else [])]

    async def run(services):
        totals: dict[str, int] = {}
        with progress("ledger-check", total=len(steps)) as bar:
            async with services.db.read() as conn:
                problems = await check_invariants(conn)
                bar.advance(1, steps[0])
                problems += await check_redemptions(conn)
                bar.advance(1, steps[1])
                if args.totals:
                    totals = {**await ledger_totals(conn), **await ledger_counts(conn)}
                    bar.advance(1, steps[2])
        return problems, totals

    problems, totals = asyncio.run(_with_services(run))
    for p in problems:
        print(p)
    if args.totals:
        print(json.dumps(totals, sort_keys=True))
    print("ledger ok" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


def cmd_seed_demo(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings.is_production:
        print("seed-demo refuses to run in production mode", file=sys.stderr)
        return 2
    return asyncio.run(_with_services(lambda services: seed_demo(services, if_empty=args.if_empty)))


def cmd_jobs(args: argparse.Namespace) -> int:
    if args.action == "run":
        if not args.name:
            print("jingtan: jobs run needs a job name (see `jingtan jobs list`)", file=sys.stderr)
            return 2
        by_name = {job.name: job for job in jobs.registered_jobs()}
        job = by_name.get(args.name)
        if job is None:
            print(f"jingtan: no job {args.name!r}; registered: {', '.join(sorted(by_name))}", file=sys.stderr)
            return 2

        async def run(services):
            return await jobs.JobRunner(services, (job,)).run_now(job)

        try:
            result = asyncio.run(_with_services(run))
        except jobs.LeaseHeld as exc:
            print(f"jingtan: {exc}", file=sys.stderr)
            return 1
        print(json.dumps({"job": job.name, **result}))
        return 1 if result.get("failed") else 0
    if args.action == "list":
        settings = _settings()
        for job in jobs.registered_jobs():
            print(f"{job.name}\tevery {job.interval_seconds(settings)} s\t{job.description}")
        return 0
    settings = _settings()
    rows = asyncio.run(_with_services(lambda services: jobs.job_status(services.db)))
    intervals = {job.name: job.interval_seconds(settings) for job in jobs.registered_jobs()}
    if args.json:
        print(json.dumps([{**row, "interval_seconds": intervals.get(row["name"])} for row in rows], default=str))
        return 0

    def when(value) -> str:
        return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"

    print("job\tinterval\tlast started\tlast finished\tstatus\tresult\tnext due\tlease holder\tlease until")
    for row in rows:
        interval = intervals.get(row["name"])
        print("\t".join([
            row["name"],
            ("off" if interval == 0 else f"{interval}s") if interval is not None else "unregistered",
            when(row.get("last_started_at")),
            when(row.get("last_finished_at")),
            row.get("last_status") or "never ran",
            row.get("last_result") or "{}",
            when(row.get("next_due_at")) if interval else "-",
            row.get("holder") or "-",
            when(row.get("lease_until")),
        ]))
    return 0


def example_config_text() -> str:
    """jingtan.example.toml: the core settings and the settings of the built-in (default) plugins."""

    host = load_plugins(default_settings())
    return example_toml({code: loaded.settings for code, loaded in host.action_types.items()})


def cmd_config(args: argparse.Namespace) -> int:
    text = example_config_text()
    path = Path(args.output)
    if args.action == "example":
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
        return 0
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        print(f"{path} is stale: run `jingtan config example`", file=sys.stderr)
        return 1
    print(f"{path} is up to date")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    if args.action == "new":
        return cmd_plugins_new(args)
    return cmd_plugins_list(args)


def cmd_plugins_new(args: argparse.Namespace) -> int:
    """Write a working plugin distribution (package, entry point, settings, methodology, tests)."""
    if not args.name:
        print(f"jingtan plugins new NAME: give the plugin's name ({scaffold.NAME_HELP})", file=sys.stderr)
        return 2
    try:
        code = scaffold.normalise(args.name)
        target = Path(args.dir) if args.dir else Path(f"jingtan-{code.replace('_', '-')}")
        written = scaffold.write(code, target)
    except (ValueError, FileExistsError) as exc:
        print(f"jingtan plugins new: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    print(f"\nNext: pip install -e '{target}[test]' && (cd {target} && pytest); then enable {code!r} in [plugins] enabled.")
    return 0


def cmd_plugins_list(args: argparse.Namespace) -> int:
    """Installed entry points of group jingtan.plugins, which are enabled, and their action types."""

    settings = _settings()
    enabled = set(settings.plugins.enabled)
    installed = discover_entry_points()
    host = load_plugins(settings)  # only the enabled ones are imported
    for name in sorted(set(installed) | enabled):
        ep = installed.get(name)
        dist = getattr(getattr(ep, "dist", None), "version", "") if ep else ""
        state = "enabled" if name in enabled else "disabled"
        where = ep.value if ep else "NOT INSTALLED"
        types = [t for t in host.action_types.values() if t.plugin == name]
        detail = ", ".join(f"{t.code} v{t.action_type.version} (input field {t.field_name})" for t in types)
        print(f"{name}\t{state}\t{where} {dist}\t{detail}".rstrip())
    return 0


def cmd_operations_register(args: argparse.Namespace) -> int:
    """Check every document of the directory against this configuration's schema, then write them into
    the manifest the allow-list and persisted queries read (nothing is written when one is invalid)."""
    settings = _settings()
    output = Path(args.output or settings.graphql.persisted_operations_file or DEFAULT_MANIFEST_PATH)
    files = read_operations(args.dir)
    if not files:
        print(f"jingtan: no *.graphql files under {args.dir}", file=sys.stderr)
        return 1
    # The schema alone (not create_app): with the allow-list on, the app refuses to start without the
    # manifest this command is about to write.
    schema = build_schema(settings, load_plugins(settings))._schema
    problems = check_documents(schema, files)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"jingtan: {len(problems)} problem(s); nothing registered", file=sys.stderr)
        return 1
    count, new, removed = register(output, files, prune=args.prune)
    print(f"registered {count} operations into {output} ({new} new, {removed} removed)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jingtan", description="Jingtan (鲸碳星球) API")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve the API (GraphiQL at /graphql in development)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int)
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("migrate", help="apply database migrations")
    p.add_argument("revision", nargs="?", default="heads")
    p.set_defaults(fn=cmd_migrate)

    p = sub.add_parser("seed-demo", help="load demo members, an admin, a merchant and some history")
    p.add_argument("--if-empty", action="store_true", help="do nothing when users exist")
    p.set_defaults(fn=cmd_seed_demo)

    p = sub.add_parser("schema", help="export or check schema/schema.graphql")
    p.add_argument("action", choices=["export", "check"])
    p.add_argument("--output", default=str(DEFAULT_SCHEMA_PATH))
    p.set_defaults(fn=cmd_schema)

    p = sub.add_parser("config", help="write or check jingtan.example.toml (every key with its default)")
    p.add_argument("action", choices=["example", "check"])
    p.add_argument("--output", default="jingtan.example.toml")
    p.set_defaults(fn=cmd_config)

    p = sub.add_parser("create-admin", help="create an admin user")
    p.add_argument("--email")
    p.add_argument("--phone")
    p.add_argument("--name", default="管理员 Admin")
    p.add_argument("--password", help="default: $JINGTAN_ADMIN_PASSWORD or a prompt")
    p.set_defaults(fn=cmd_create_admin)

    p = sub.add_parser("create-api-token", help="create an API token for a user; prints the secret once")
    p.add_argument("--user", required=True, help="email or phone of the owner")
    p.add_argument("--name", required=True)
    p.add_argument("--scopes", required=True, help="comma-separated, e.g. account:read")
    p.add_argument("--by", help="email or phone of the admin making the token for the user: recorded on the "
                   "audit log and on everything done with the token")
    p.set_defaults(fn=cmd_create_api_token)

    p = sub.add_parser("expire-points", help="move points of expired lots to the expired account")
    p.set_defaults(fn=cmd_expire_points)

    p = sub.add_parser("expire-redemptions", help="expire unused redemption codes past their expiry and refund them")
    p.set_defaults(fn=cmd_expire_redemptions)

    p = sub.add_parser("plugins", help="list installed and enabled action plugins, or start a new one")
    p.add_argument("action", choices=["list", "new"], help="list: installed and enabled; new NAME: write a plugin")
    p.add_argument("name", nargs="?", help=f"new: the action type code, {scaffold.NAME_HELP}")
    p.add_argument("--dir", default=None, help="new: where to write it (default ./jingtan-<name>)")
    p.set_defaults(fn=cmd_plugins)

    p = sub.add_parser("operations", help="register the operations of schema/operations/ (persisted queries, allow-list)")
    p.add_argument("action", choices=["register"])
    p.add_argument("--dir", default=str(DEFAULT_OPERATIONS_DIR), help="directory of *.graphql documents")
    p.add_argument("--output", help=f"manifest (default: graphql.persisted_operations_file or {DEFAULT_MANIFEST_PATH})")
    p.add_argument("--prune", action="store_true", help="drop operations no longer in the directory")
    p.set_defaults(fn=cmd_operations_register)

    p = sub.add_parser("jobs", help="periodic jobs: list, run one now (under its lease), status of every job")
    p.add_argument("action", choices=["list", "run", "status"])
    p.add_argument("name", nargs="?", help="the job to run")
    p.add_argument("--json", action="store_true", help="status as JSON")
    p.set_defaults(fn=cmd_jobs)

    p = sub.add_parser("ledger-check", help="verify the ledger invariants; exit 1 on any violation")
    p.add_argument("--totals", action="store_true",
                   help="also print the ledger totals and row counts as one JSON line (compare a restored backup)")
    p.set_defaults(fn=cmd_ledger_check)
    impact_cli.add_commands(sub, _with_services)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except ConfigurationError as exc:
        print(f"jingtan: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a CLI prints one line, not a traceback, for domain errors
        if isinstance(exc, DomainError):
            print(f"jingtan: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
        if isinstance(exc, DBAPIError):
            print(f"jingtan: database error: {str(exc.orig).splitlines()[0]} (is the database migrated and reachable?)", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
