"""Issue 17, scenario 9: abuse of the inbound side, judged where it lands (real processes).

One `monoduty api` and one `monoduty worker` on the session's PostgreSQL and Redis, the local
ntfy, Twilio and SMTP servers as providers.

- Flood: 10x the inbound rate limit at one webhook at once: exactly the limit accepted, the rest
  429 with RateLimit, RateLimit-Policy and Retry-After; another webhook's alerts all accepted
  meanwhile; the API's resident memory before and after (reported, bounded).
- Injection: a title and message carrying CRLF headers, TwiML, and HTML, delivered by SMS, voice
  call, push and email: the Twilio stand-in gets the SMS text verbatim and well-formed TwiML that
  says it as text, the SMTP server no injected header, ntfy one-line headers, and the dashboard's
  incident page shows it escaped.
- Chat injection: the same kind of text, in the title, message, source, a sender's link, PagerDuty
  custom details and the webhook's name, paged to Slack, Discord, Teams, Matrix, Telegram and a
  WEBHOOK receiver (their stand-ins in tests/support/providers.py), judged as each platform renders
  it: no Slack ``<!channel>``/``<@U…>``/``<url|label>`` nor bare @channel, Discord's
  ``allowed_mentions`` empty and no masked link but ours, no Teams Markdown link, Matrix HTML of
  our tags only with an empty ``m.mentions``, Telegram HTML of our tags only and no @username.
- Guessed tokens: the answer time of a near miss (the real token, its last two characters changed)
  against a random token, interleaved samples, compared by Welch's t (reported; asserted only to be
  within noise: |t| < 4).

Bodies at and over every limit, gzip bombs, deep JSON and bad encodings are tests/test_limits.py,
tests/test_compressed_bodies.py, tests/test_payload_too_large.py and tests/test_input_fuzz.py;
invalid UTF-8 (kept, read as U+FFFD, delivered) is here. Figures: tests/faults/results/abuse.{json,md}.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import secrets
import statistics
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import aiohttp
import asyncpg
import pytest

from engine.auth.accounts import set_password
from tests.faults.figures import write_figures
from tests.faults.storm import PUBLIC_URL, api_process, worker_env
from tests.support.factories import Account
from tests.support.faults import WorkerProcess
from tests.support.processes import ApiProcess, wait_until
from tests.support.providers import (
    CHAT_PATHS,
    MATRIX_TOKEN,
    TELEGRAM_TOKEN,
    FakeProviders,
    Request,
    SmtpServer,
)
from tests.support.services import Services

LIMIT = 20  # alerts a minute per webhook, for the flood
TIMING_SAMPLES = 300  # of each kind
PASSWORD = "an abuse-proof password"
HOSTILE_TITLE = (
    "db down\r\nBcc: victim@example.net\r\nX-Injected: 1 </Say><Dial>+15550000</Dial>"
    " <script>alert(1)</script>"
)
HOSTILE_MESSAGE = 'line one\r\n\r\n<Response><Hangup/></Response> & "quotes" <img src=x onerror=alert(2)>'
# What each chat platform reads as a mention, a link or markup.
HOSTILE_CHAT = (
    "<!channel> <!here> <@U123> <http://evil.example|click> @channel @here @everyone <@&1234> @room"
    " [click](https://evil.example) <a href='https://evil.example'>x</a> <b onclick=alert(3)>b</b> & @durov"
)
SENDER_LINK = "https://ok.example/a)[click](https://evil.example"
CHAT_KINDS = ("slack", "discord", "teams", "matrix", "telegram", "webhook")
MENTIONS = ("<!channel>", "<!here>", "<@U123>", "<!everyone>")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def new_webhook(
    http: aiohttp.ClientSession, api: ApiProcess, account: Account, body: dict[str, Any]
) -> dict[str, Any]:
    async with http.post(f"{api.url}/api/webhooks", json=body, headers=account.headers) as resp:
        assert resp.status == 201, await resp.text()
        return (await resp.json())["webhook"]


def local(api: ApiProcess, webhook: dict[str, Any]) -> str:
    return api.url + webhook["webhook_url"].removeprefix(PUBLIC_URL)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_floods_injections_and_guessed_tokens_are_harmless_where_they_land(
    services: Services, pool: asyncpg.Pool, account: Account, fake_providers: FakeProviders, tmp_path: Path
) -> None:
    figures: dict[str, Any] = {}
    problems: list[str] = []
    with SmtpServer() as smtp:
        env = {
            **worker_env(services, fake_providers, smtp),
            "MONODUTY_RATE_LIMIT_INBOUND": f"{LIMIT}/minute",
            # The chat platforms' stand-ins are on this machine, and pages carry action links.
            "MONODUTY_ALLOW_PRIVATE_TARGETS": "true",
            "MONODUTY_SECRET_KEY": "abuse-scenario-secret-key-0123456789abcdef",
            "MONODUTY_MATRIX_HOMESERVER_URL": fake_providers.url,
            "MONODUTY_MATRIX_ACCESS_TOKEN": MATRIX_TOKEN,
            "MONODUTY_TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
            "MONODUTY_TELEGRAM_BASE_URL": fake_providers.url,
        }
        async with (
            api_process(services, env, tmp_path) as api,
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
        ):
            worker = WorkerProcess(tmp_path / "worker.log", **env)
            try:
                await flood(http, api, account, figures, problems)
                await injection(http, api, account, pool, fake_providers, smtp, figures, problems)
                await chat_injection(http, api, account, fake_providers, figures, problems)
            finally:
                figures["worker_exit"] = await asyncio.to_thread(worker.stop)
        # Guesses on an API whose per-address failure budget (the inbound limit) is out of reach:
        # every sample is a real lookup, not a 429.
        unlimited = {**env, "MONODUTY_RATE_LIMIT_INBOUND": "1000000/minute"}
        folder = tmp_path / "timing"
        folder.mkdir()
        async with api_process(services, unlimited, folder) as api, aiohttp.ClientSession() as http:
            await guessed_tokens(http, api, account, figures)
    t = figures["timing"]["welch_t"]
    fl = figures["flood"]
    write_figures(
        "abuse",
        "Abuse (issue 17, scenario 9)",
        "Written by tests/faults/test_abuse.py: one `monoduty api`, one worker, local providers",
        [
            [
                "flood (10x the limit)",
                "other webhook",
                "API memory",
                "injection at the providers and dashboard",
                "injection at the chat platforms",
                "token timing: near miss / random",
            ],
            [
                f"{fl['accepted']} accepted, {fl['refused_429']} x 429 with headers",
                f"{fl['other_accepted']} of {fl['other_sent']} accepted",
                f"{fl['rss_before_kib'] / 1024:.1f} -> {fl['rss_after_kib'] / 1024:.1f} MiB",
                "clean" if not [p for p in problems if not p.startswith("chat")] else "problems",
                "clean" if not [p for p in problems if p.startswith("chat")] else "problems",
                f"{figures['timing']['near_mean_ms']:.3f} / {figures['timing']['random_mean_ms']:.3f} ms "
                f"(n={TIMING_SAMPLES} each, Welch t={t:.2f})",
            ],
        ],
        {**figures, "problems": problems},
        tmp_path,
    )
    assert problems == []
    assert abs(t) < 4, figures["timing"]
    assert figures["worker_exit"] == 0


async def flood(
    http: aiohttp.ClientSession,
    api: ApiProcess,
    account: Account,
    figures: dict[str, Any],
    problems: list[str],
) -> None:
    target = {"notificationTypes": ["PUSH_NOTIF"], "targetChannels": {"push": "flood"}, "dedupBy": "none"}
    flooded = await new_webhook(http, api, account, {"name": "flooded", **target})
    other = await new_webhook(http, api, account, {"name": "other", **target})
    before = rss_kib(api.proc.pid)
    gate = asyncio.Semaphore(20)

    async def post(webhook: dict[str, Any], n: int) -> tuple[int, dict[str, str]]:
        async with gate, http.post(local(api, webhook), json={"title": f"flood {n}"}) as resp:
            await resp.read()
            return resp.status, dict(resp.headers)

    answers = await asyncio.gather(*(post(flooded, n) for n in range(10 * LIMIT)))
    others = await asyncio.gather(*(post(other, n) for n in range(LIMIT // 2)))
    after = rss_kib(api.proc.pid)
    refused = [h for s, h in answers if s == 429]
    for headers in refused:
        if not (
            headers.get("RateLimit-Policy")
            and headers.get("RateLimit")
            and int(headers.get("Retry-After", "0")) >= 1
        ):
            problems.append(f"a 429 without its rate-limit headers: {headers}")
            break
    figures["flood"] = {
        "sent": 10 * LIMIT,
        "accepted": sum(1 for s, _ in answers if s == 202),
        "refused_429": len(refused),
        "other_statuses": sorted({s for s, _ in answers} - {202, 429}),
        "other_sent": len(others),
        "other_accepted": sum(1 for s, _ in others if s == 202),
        "rss_before_kib": before,
        "rss_after_kib": after,
    }
    if figures["flood"]["accepted"] != LIMIT or figures["flood"]["other_statuses"]:
        problems.append(f"flood: {figures['flood']}")
    if figures["flood"]["other_accepted"] != len(others):
        problems.append("the other webhook's alerts were refused during the flood")
    if after - before > 50 * 1024:
        problems.append(f"the API grew by {(after - before) / 1024:.0f} MiB over the flood")


async def injection(
    http: aiohttp.ClientSession,
    api: ApiProcess,
    account: Account,
    pool: asyncpg.Pool,
    fake: FakeProviders,
    smtp: SmtpServer,
    figures: dict[str, Any],
    problems: list[str],
) -> None:
    tag = uuid.uuid4().hex[:8]
    body = {
        "name": "hostile",
        "notificationTypes": ["SMS", "CALL", "PUSH_NOTIF", "EMAIL"],
        "targetChannels": {
            "sms": "+14155550171",
            "call": "+14155550172",
            "push": f"hostile-{tag}",
            "email": "ops@example.com",
        },
    }
    webhook = await new_webhook(http, api, account, body)
    async with http.post(
        local(api, webhook), json={"title": HOSTILE_TITLE, "message": HOSTILE_MESSAGE}
    ) as resp:
        assert resp.status == 202, await resp.text()
        alert_id = (await resp.json())["alert_id"]
    # Invalid UTF-8 from a sender: kept, not refused (an alert is not lost over a byte), its bad
    # bytes read as U+FFFD (engine.alerts.payloads), and delivered like any other.
    async with http.post(
        local(api, webhook),
        data=b'{"title": "\xff\xfe odd bytes"}',
        headers={"Content-Type": "application/json"},
    ) as resp:
        figures["invalid_utf8_status"] = resp.status
        odd_id = (await resp.json()).get("alert_id") if resp.status == 202 else None
    if odd_id is None:
        problems.append(f"an alert with invalid UTF-8 was refused: {figures['invalid_utf8_status']}")

    async def final(alert: str) -> Any:
        async with pool.acquire() as conn:
            return await conn.fetchrow(
                "SELECT status, title FROM alerts WHERE id = $1 AND status <> 'pending'", uuid.UUID(alert)
            )

    if odd_id is not None:
        row = await wait_until(lambda: final(odd_id), "the invalid UTF-8 alert to be final", 60)
        figures["invalid_utf8_alert"] = {"status": row["status"], "title": row["title"]}
        if row["status"] != "successful" or "\ufffd" not in row["title"]:
            problems.append(f"the invalid UTF-8 alert: {dict(row)}")

    def arrived() -> bool:
        kinds = {
            r.kind for r in fake.requests if r.target in ("+14155550171", "+14155550172", f"hostile-{tag}")
        }
        return kinds == {"sms", "call", "push"} and any(
            "ops@example.com" in str(m["To"]) for m in smtp.messages
        )

    await wait_until(arrived, "every provider to receive the hostile alert", 60)
    seen: dict[str, Any] = {}
    for request in fake.requests:
        text = request.form.get("Body", "") + request.form.get("Twiml", "") + request.headers.get("Title", "")
        if "db down" not in text:
            continue  # another alert's (the invalid UTF-8 one's)
        if request.target == "+14155550171":
            seen["sms_body"] = request.form.get("Body", "")
            if "</Dial> <script>alert(1)</script>" not in seen["sms_body"]:
                problems.append(f"the SMS does not carry the text: {seen['sms_body']!r}")
        elif request.target == "+14155550172":
            twiml = request.form.get("Twiml", "")
            seen["twiml"] = twiml
            try:
                root = ElementTree.fromstring(twiml)  # noqa: S314 - our own TwiML, as Twilio parses it
            except ElementTree.ParseError as exc:
                problems.append(f"the call's TwiML is not well-formed: {exc}")
                continue
            if root.findall(".//Dial") or root.findall(".//Hangup") or root.tag != "Response":
                problems.append(f"the TwiML gained verbs from the alert: {twiml}")
            said = " ".join(s.text or "" for s in root.iter("Say"))
            if "<Dial>" not in said and "Dial" not in said:
                problems.append(f"the TwiML does not say the text as text: {said!r}")
        elif request.target == f"hostile-{tag}":
            seen["push_headers"] = {
                k: v for k, v in request.headers.items() if k in ("Title", "Tags", "Click")
            }
            for name, value in request.headers.items():
                if "\r" in value or "\n" in value or name.lower() in ("bcc", "x-injected"):
                    problems.append(f"ntfy got a broken or injected header {name}: {value!r}")
    for message in smtp.messages:
        if "ops@example.com" not in str(message["To"]) or "db down" not in str(message["Subject"]):
            continue
        seen["email_headers"] = sorted(message.keys())
        if message["Bcc"] is not None or message["X-Injected"] is not None:
            problems.append(f"the email gained headers: {seen['email_headers']}")
        if "\n" in str(message["Subject"]) or "\r" in str(message["Subject"]):
            problems.append(f"the email's subject spans lines: {message['Subject']!r}")

    async with pool.acquire() as conn:
        await set_password(conn, account.user.id, PASSWORD)
        incident_id = await conn.fetchval("SELECT incident_id FROM alerts WHERE id = $1", uuid.UUID(alert_id))
    form = {"email": account.user.email, "password": PASSWORD, "next": "/"}
    async with http.post(f"{api.url}/sign-in", data=form, allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
    async with http.get(f"{api.url}/incidents/{incident_id}") as resp:
        assert resp.status == 200, await resp.text()
        page = await resp.text()
    for raw in ("<script>alert(1)</script>", "<img src=x onerror=alert(2)>"):
        if raw in page:
            problems.append(f"the dashboard's incident page holds {raw} unescaped")
    if "&lt;script&gt;alert(1)&lt;/script&gt;" not in page:
        problems.append("the dashboard's incident page does not show the title, escaped")
    figures["injection"] = seen


class _Markup(HTMLParser):
    """The tags and attributes an HTML renderer (Matrix's formatted_body, Telegram's HTML) sees."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def markup_problems(kind: str, html: str, allowed: set[str]) -> list[str]:
    parser = _Markup()
    parser.feed(html)
    found = []
    for tag, attrs in parser.tags:
        if tag not in allowed:
            found.append(f"chat: {kind} renders a <{tag}> from the alert")
        for name, value in attrs:
            if name != "href" or not ours(value or ""):
                found.append(f"chat: {kind} renders {name}={value!r} from the alert")
    return found


def ours(url: str) -> bool:
    """A link of the page's own: to Monoduty (actions, the incident), or the sender's link, whole."""
    return url.startswith((PUBLIC_URL + "/", "https://ok.example/"))


def judge_chat(request: Request) -> list[str]:
    """What the platform of ``request`` would render from it that the alert's text put there."""
    body = json.loads(request.body)
    kind = request.kind
    found: list[str] = []
    if kind == "slack":
        shown = [body["text"]] + [json.dumps(b) for b in body["blocks"] if b["type"] != "header"]
        for text in shown:
            for token in re.findall(r"<([^<>]*)>", text):  # every <...> Slack parses: ours only
                if not ours(token.split("|")[0]):
                    found.append(f"chat: slack parses <{token}>")
            if re.search(r"(?<![\w.])@(channel|here|everyone|all)\b", text):
                found.append("chat: slack text holds a bare @channel (Mattermost, Rocket.Chat ping it)")
    elif kind == "discord":
        if body.get("allowed_mentions") != {"parse": []}:
            found.append(f"chat: discord allowed_mentions {body.get('allowed_mentions')}")
        embed = body["embeds"][0]
        texts = [body["content"], embed["description"], *(f["value"] for f in embed["fields"])]
        for text in texts:
            unescaped = re.sub(r"\\.", "", text)  # a backslash-escaped character is literal
            for url in re.findall(r"\[[^\]]*\]\(([^)]*)\)", unescaped):
                if not ours(url):
                    found.append(f"chat: discord renders a masked link to {url}")
    elif kind == "teams":
        card = body["attachments"][0]["content"]
        texts = [b["text"] for b in card["body"] if "text" in b]
        texts += [f["value"] for b in card["body"] for f in b.get("facts", [])]
        for text in texts:
            for url in re.findall(r"\]\(([^)]*)\)", text):
                if not ours(url):
                    found.append(f"chat: teams renders a Markdown link to {url}")
        found += [f"chat: teams action to {a['url']}" for a in card["actions"] if not ours(a["url"])]
    elif kind == "matrix":
        if body.get("m.mentions") != {}:
            found.append(f"chat: matrix m.mentions {body.get('m.mentions')} (@room in the body notifies)")
        found += markup_problems("matrix", body["formatted_body"], {"strong", "br", "a"})
    elif kind == "telegram":
        if body.get("parse_mode") != "HTML":
            found.append(f"chat: telegram parse_mode {body.get('parse_mode')}")
        found += markup_problems("telegram", body["text"], {"b", "a"})
        if re.search(r"(?<![\w.])@[A-Za-z]\w{3,}", body["text"]):
            found.append("chat: telegram text holds an @username (it notifies that user)")
    elif kind == "webhook" and HOSTILE_CHAT not in json.dumps(body, ensure_ascii=False):
        found.append("chat: the WEBHOOK receiver did not get the text as sent")
    return found


async def chat_injection(
    http: aiohttp.ClientSession,
    api: ApiProcess,
    account: Account,
    fake: FakeProviders,
    figures: dict[str, Any],
    problems: list[str],
) -> None:
    tag = uuid.uuid4().hex[:8]
    targets = {kind: f"{fake.url}{path}{tag}" for kind, path in CHAT_PATHS.items()}
    targets |= {"matrix": f"!hostile{tag}:monoduty.test", "telegram": str(-1001000000000 - int(tag, 16))}
    body = {
        "name": f"chat {HOSTILE_CHAT}"[:100],
        "notificationTypes": [kind.upper() for kind in CHAT_KINDS],
        "targetChannels": targets,
        "dedupBy": "none",
    }
    webhook = await new_webhook(http, api, account, body)
    alerts = [
        {"title": HOSTILE_CHAT, "message": HOSTILE_CHAT, "source": HOSTILE_CHAT},
        {  # a PagerDuty event: custom details (labels) and a sender's link
            "event_action": "trigger",
            "payload": {
                "summary": HOSTILE_CHAT,
                "source": HOSTILE_CHAT,
                "severity": "critical",
                "custom_details": {"label": HOSTILE_CHAT},
            },
            "links": [{"href": SENDER_LINK, "text": HOSTILE_CHAT}],
        },
    ]
    for alert in alerts:
        async with http.post(local(api, webhook), json=alert) as resp:
            assert resp.status == 202, await resp.text()
    wanted = {kind: targets[kind].rsplit("/", 1)[-1] for kind in CHAT_KINDS}

    def mine() -> list[Request]:
        return [r for r in fake.requests if r.kind in wanted and r.target == wanted[r.kind]]

    def arrived() -> bool:
        got = [r.kind for r in mine()]
        return all(got.count(kind) >= len(alerts) for kind in CHAT_KINDS)

    await wait_until(arrived, "every chat platform to receive both hostile alerts", 90)
    found = [problem for request in mine() for problem in judge_chat(request)]
    figures["chat_injection"] = {
        "platforms": list(CHAT_KINDS),
        "requests": len(mine()),
        "problems": found,
        "slack_text": json.loads(next(r.body for r in mine() if r.kind == "slack"))["text"],
    }
    problems += list(dict.fromkeys(found))


async def guessed_tokens(
    http: aiohttp.ClientSession, api: ApiProcess, account: Account, figures: dict[str, Any]
) -> None:
    """Each sample a token never tried before (a miss is cached): the lookup pays PostgreSQL once."""
    hook = {"name": "guessed", "notificationTypes": ["PUSH_NOTIF"], "targetChannels": {"push": "guessed"}}
    real = re.sub(r".*/", "", (await new_webhook(http, api, account, hook))["webhook_url"])
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    tails = [a + b for a in alphabet for b in alphabet if a + b != real[-2:]]
    near_tokens = [real[:-2] + t for t in secrets.SystemRandom().sample(tails, TIMING_SAMPLES)]
    times: dict[str, list[float]] = {"near": [], "random": []}

    async def one(kind: str, token: str) -> None:
        started = time.perf_counter()
        async with http.post(f"{api.url}/{token}", json={"title": "guess"}) as resp:
            await resp.read()
        times[kind].append((time.perf_counter() - started) * 1000)
        assert resp.status == 404, resp.status

    for n in range(TIMING_SAMPLES):  # interleaved: the machine's drift falls on both alike
        await one("near", near_tokens[n])
        await one("random", secrets.token_urlsafe(24))
    near, rand = times["near"], times["random"]
    se = math.sqrt(statistics.variance(near) / len(near) + statistics.variance(rand) / len(rand))
    figures["timing"] = {
        "samples": TIMING_SAMPLES,
        "near_mean_ms": statistics.fmean(near),
        "random_mean_ms": statistics.fmean(rand),
        "near_median_ms": statistics.median(near),
        "random_median_ms": statistics.median(rand),
        "near_stdev_ms": statistics.stdev(near),
        "random_stdev_ms": statistics.stdev(rand),
        "welch_t": (statistics.fmean(near) - statistics.fmean(rand)) / se if se else 0.0,
    }
