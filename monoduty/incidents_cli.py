"""`monoduty incidents`: the on-call engineer's incidents from a terminal, through the HTTP API.

It talks to the API as the person whose key it holds (MONODUTY_API_KEY, never an argument, so it
stays out of shell history), at MONODUTY_API_URL (default http://127.0.0.1:8080): the same
permissions, timeline entries and stop-on-acknowledge as the API itself. An incident is named by
its number (42 or #42, as pages say it) or its id; a number several of your teams use needs --team.

    monoduty incidents list [--status open|triggered|acknowledged|resolved|all] [--json]
    monoduty incidents ack 42        (also: resolve, escalate)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from typing import Any

import aiohttp

DEFAULT_API_URL = "http://127.0.0.1:8080"
ACTIONS = {"ack": "acknowledge", "acknowledge": "acknowledge", "resolve": "resolve", "escalate": "escalate"}


class CliError(Exception):
    """What to print before exiting 1."""


def add_parser(sub: Any) -> None:
    incidents = sub.add_parser(
        "incidents", help="list, acknowledge, resolve, escalate incidents (needs an API key)"
    )
    commands = incidents.add_subparsers(dest="incidents_command", required=True)
    listing = commands.add_parser("list", help="your teams' incidents, newest first")
    listing.add_argument(
        "--status", default="open", choices=["open", "triggered", "acknowledged", "resolved", "all"]
    )
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=run)
    for name in ("ack", "resolve", "escalate"):
        command = commands.add_parser(name, help=f"{ACTIONS[name]} an incident, by number (42, #42) or id")
        command.add_argument("incident")
        command.add_argument("--team", help="the team's id, when several of your teams have that number")
        command.add_argument("--json", action="store_true")
        command.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    try:
        asyncio.run(_run(args, os.environ))
    except CliError as exc:
        print(f"monoduty incidents: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


async def _run(args: argparse.Namespace, env: os._Environ[str] | dict[str, str]) -> None:
    key = (env.get("MONODUTY_API_KEY") or "").strip()
    if not key:
        raise CliError("set MONODUTY_API_KEY to your API key (`monoduty users create` prints one)")
    base = (env.get("MONODUTY_API_URL") or DEFAULT_API_URL).rstrip("/")
    headers = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base, headers=headers, timeout=timeout) as session:
        api = Api(session, base)
        if args.incidents_command == "list":
            found = await api.call(
                "GET", "/api/incidents", params={"status": args.status, "limit": str(args.limit)}
            )
            show_list(found["incidents"], as_json=args.json)
            return
        incident = await find(api, args.incident, args.team)
        action = ACTIONS[args.incidents_command]
        done = await api.call("POST", f"/api/incidents/{incident['id']}/{action}")
        changed = done.get("incident", incident)
        if args.json:
            print(json.dumps(changed, indent=2))
        else:
            print(f"#{changed['number']} {changed['title']}: {changed['status']}")


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(self, method: str, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        try:
            async with self.session.request(method, path, params=params) as resp:
                try:
                    body = await resp.json(content_type=None)
                except (json.JSONDecodeError, aiohttp.ContentTypeError):
                    raise CliError(f"{self.base} answered {resp.status}, not Monoduty's JSON") from None
        except aiohttp.ClientError as exc:
            raise CliError(f"cannot reach {self.base} ({type(exc).__name__}); set MONODUTY_API_URL") from None
        if not isinstance(body, dict) or body.get("success") is False or resp.status >= 400:
            message = body.get("message") if isinstance(body, dict) else None
            raise CliError(f"{message or 'request refused'} ({resp.status})")
        return body


async def find(api: Api, name: str, team: str | None) -> dict[str, Any]:
    """The incident named by id, or by number (in ``team`` when given)."""
    try:
        incident_id = uuid.UUID(name)
    except ValueError:
        pass
    else:
        return dict((await api.call("GET", f"/api/incidents/{incident_id}"))["incident"])
    params = {"number": name.removeprefix("#"), "status": "all", "limit": "100"}
    if team:
        params["team"] = team
    found = (await api.call("GET", "/api/incidents", params=params))["incidents"]
    if not found:
        raise CliError(f"no incident #{params['number']} in your teams")
    if len(found) > 1:
        teams = ", ".join(sorted(str(i["team_id"]) for i in found))
        raise CliError(f"#{params['number']} is in several of your teams ({teams}): add --team <id>")
    return dict(found[0])


def show_list(incidents: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(incidents, indent=2))
        return
    if not incidents:
        print("no incidents")
    for i in incidents:
        severity = i["severity"].upper()
        print(f"#{i['number']:<5} {i['status']:<13} {severity:<9} {i['title']}  ({i['created_at']})")
