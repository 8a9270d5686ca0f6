"""``jingtan impact report|rebuild`` and ``jingtan challenges settle`` (added to the CLI by jingtan_api.cli)."""

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jingtan_api.challenges import jobs as challenge_jobs
from jingtan_api.impact import service

WithServices = Callable[[Callable[[Any], Awaitable[Any]]], Awaitable[Any]]


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def add_commands(sub: Any, with_services: WithServices) -> None:
    def cmd_report(args: argparse.Namespace) -> int:
        async def run(services: Any) -> str:
            tz = ZoneInfo(services.settings.actions.timezone)
            start, end = service.validate_range(args.from_, args.to, max_days=service.MAX_REPORT_DAYS)
            async with services.db.read() as conn:
                rep = await service.report(conn, start, end, tz=tz, now=services.clock())
            if args.format == "csv":
                return service.report_csv(rep)
            return json.dumps(service.report_json(rep), ensure_ascii=False, indent=2) + "\n"

        text = asyncio.run(with_services(run))
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0

    def cmd_rebuild(args: argparse.Namespace) -> int:
        async def run(services: Any) -> int:
            tz = ZoneInfo(services.settings.actions.timezone)
            return await services.db.write(lambda conn: service.rebuild(conn, tz=tz))

        print(json.dumps({"actions": asyncio.run(with_services(run))}))
        return 0

    def cmd_settle(args: argparse.Namespace) -> int:
        async def run(services: Any) -> Any:
            return dict(await challenge_jobs.settle_due(services, services.clock()))

        print(json.dumps(asyncio.run(with_services(run))))
        return 0

    p = sub.add_parser("impact", help="verified reductions report; rebuild the impact aggregates")
    isub = p.add_subparsers(dest="impact_command", required=True)
    r = isub.add_parser("report", help="verified reductions per methodology and month, as CSV or JSON")
    r.add_argument("--from", dest="from_", type=_date, required=True, help="first day (YYYY-MM-DD, platform time zone)")
    r.add_argument("--to", type=_date, required=True, help="last day (inclusive)")
    r.add_argument("--format", choices=("csv", "json"), default="csv")
    r.add_argument("--output", help="write to this file instead of stdout")
    r.set_defaults(fn=cmd_report)
    b = isub.add_parser("rebuild", help="recompute leaderboards and impact totals from the approved actions")
    b.set_defaults(fn=cmd_rebuild)
    c = sub.add_parser("challenges", help="challenges: settle those that ended (what the server's job does)")
    csub = c.add_subparsers(dest="challenges_command", required=True)
    s = csub.add_parser("settle", help="settle every challenge that has ended (idempotent)")
    s.set_defaults(fn=cmd_settle)
