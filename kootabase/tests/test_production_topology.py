"""The production topology, run for real against MariaDB and Redis on this machine.

The processes are started as production starts them, with the commands of the image and
of the Kubernetes manifests (Dockerfile's CMD, k8s/base) and the base ConfigMap's
settings: the ASGI server with two workers, a Celery worker (every queue), a sharded
matcher and the beat scheduler, with ``DJANGO_ENV=production`` on a database of their
own, migrated by ``manage.py migrate`` as the migration Job does. Then, over real HTTP and
WebSocket, as the ingress forwards them (``X-Forwarded-Proto: https``): a staff member
turns 2FA on and adds the currencies and the market in the back office; two traders
register, the operator funds them with ``manage.py credit``, they trade through REST, the
trade arrives on the socket, the balances are exact, the dashboard and ``/metrics``
answer, beat's tasks run on the worker; every process stops cleanly on SIGTERM, and
``manage.py ledger_audit`` passes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django_otp.oath import TOTP
from eth_account.hdaccount import Language, generate_mnemonic
from kombu import Connection
from kombu.exceptions import ChannelError
from websockets.sync.client import connect

from kootabase.celery import QUEUES
from kootabase.tests.deployment import ROOT, dockerfile_cmd, rendered

pytestmark = [pytest.mark.mariadb, pytest.mark.redis, pytest.mark.slow]

STOP_WITHIN = 60  # seconds each process gets to exit after SIGTERM
READY_WITHIN = 90
FORWARDED = {"X-Forwarded-Proto": "https"}  # what the ingress adds: the request came over TLS


# --- the commands and settings of production -------------------------------------------------


def _option(argv: list[str], flag: str, value: str) -> list[str]:
    """``argv`` with the value after ``flag`` replaced (the flag must be there)."""
    index = argv.index(flag)
    return [*argv[: index + 1], value, *argv[index + 2 :]]


def _local(argv: list[str]) -> list[str]:
    """Run the image's executables from this interpreter's environment."""
    program, *rest = argv
    if program == "python":
        return [sys.executable, *rest]
    return [sys.executable, "-m", program, *rest]


def production_commands(*, port: int, shard_file: Path, beat_schedule: Path) -> dict[str, list[str]]:
    """Each process's command as the image and k8s/base run it; only addresses and paths change."""
    workloads = {d["metadata"]["name"]: d for d in rendered("base") if d["kind"] in {"Deployment", "StatefulSet"}}

    def args(name: str) -> list[str]:
        return list(workloads[name]["spec"]["template"]["spec"]["containers"][0]["args"])

    web = _option(_option(dockerfile_cmd(), "--host", "127.0.0.1"), "--port", str(port))
    worker = _option(args("kootabase-worker-default"), "--queues", ",".join(QUEUES))
    beat = _option(args("kootabase-beat"), "--schedule", str(beat_schedule))
    matcher = _option(_option(args("kootabase-matcher"), "--shard-file", str(shard_file)), "--shard", "0")
    return {
        name: _local(argv) for name, argv in {"web": web, "worker": worker, "beat": beat, "matcher": matcher}.items()
    }


def production_env(*, database_url: str, var_dir: Path, static_root: Path) -> dict[str, str]:
    config = next(doc for doc in rendered("base") if doc["kind"] == "ConfigMap" and "ALLOWED_HOSTS" in doc["data"])
    inherited = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER"}}
    return {
        **inherited,
        **config["data"],
        "DJANGO_SETTINGS_MODULE": "kootabase.settings",
        # The ConfigMap's public host name is not this machine's: requests reach the server by
        # its address, allowed as the pod's own (web-deployment.yaml sets POD_IP).
        "POD_IP": "127.0.0.1",
        # The keys of k8s/base/secret.example.yaml, with real values.
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "API_KEY_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "HD_WALLET_MNEMONIC": generate_mnemonic(num_words=24, lang=Language.ENGLISH),
        "HOT_WALLET_PRIVATE_KEY": "0x" + secrets.token_hex(32),
        "METRICS_TOKEN": secrets.token_urlsafe(32),
        # As the image sets them.
        "KOOTABASE_VAR_DIR": str(var_dir),
        "STATIC_ROOT": str(static_root),
        "PYTHONUNBUFFERED": "1",
    }


def queued(broker_url: str) -> int:
    """Messages waiting in the broker's queues (Redis has no key for an empty queue)."""
    count = 0
    with Connection(broker_url) as conn:
        for queue in QUEUES:
            with contextlib.suppress(ChannelError):
                count += conn.default_channel.queue_declare(queue=queue, passive=True).message_count
    return count


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def database_url() -> Iterator[str]:
    """A database of the topology's own, created here and dropped afterwards."""
    import MySQLdb  # installed with requirements-mysql.txt, for CI's MariaDB pass

    db = settings.DATABASES["default"]
    server = {"host": db["HOST"] or "127.0.0.1", "port": int(db["PORT"] or 3306), "user": db["USER"]}
    name = f"kb_topology_{secrets.token_hex(4)}"
    conn = MySQLdb.connect(**server, password=db["PASSWORD"] or "")
    try:
        conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
        yield f"mysql://{quote(server['user'], safe='')}{password}@{server['host']}:{server['port']}/{name}"
    finally:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


class Topology:
    """The processes, each with its output in a log file; stopped by SIGTERM."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopped: set[str] = set()

    def manage(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )

    def start(self, name: str, argv: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("w")
        self.procs[name] = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()

    def alive(self) -> None:
        for name, proc in self.procs.items():
            if name not in self.stopped:
                assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}"

    def stop(self, *names: str) -> dict[str, int | None]:
        """SIGTERM to ``names``; their exit codes (None: still running after STOP_WITHIN)."""
        self.stopped.update(names)
        for name in names:
            self.procs[name].send_signal(signal.SIGTERM)
        codes = {}
        for name in names:
            try:
                codes[name] = self.procs[name].wait(timeout=STOP_WITHIN)
            except subprocess.TimeoutExpired:
                codes[name] = None
        return codes

    def kill_leftovers(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def wait_for(what: str, check: Callable[[], Any], topology: Topology, within: float = READY_WITHIN) -> Any:
    deadline = time.monotonic() + within
    while True:
        topology.alive()
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {within}s"
        time.sleep(0.3)


# --- HTTP as a browser and as API clients ----------------------------------------------------


class FormParser(HTMLParser):
    """The fields of a page's main POST form (the one with the most fields: the admin's
    header also holds the logout form), with the values a browser would send."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[dict[str, str], dict[str, dict[str, str]]]] = []
        self._select: str | None = None
        self._option: str | None = None

    @property
    def fields(self) -> dict[str, str]:
        return max(self.forms, key=lambda form: len(form[0]))[0]

    @property
    def options(self) -> dict[str, dict[str, str]]:
        """Select name -> option text -> value."""
        return max(self.forms, key=lambda form: len(form[0]))[1]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(({}, {}))
            return
        if not self.forms or ("name" not in a and tag in {"input", "select", "textarea"}):
            return
        fields, options = self.forms[-1]
        if tag == "input" and a.get("type") not in {"submit", "button", "file"}:
            if a.get("type") not in {"checkbox", "radio"} or "checked" in a:
                fields[a["name"]] = a.get("value", "on" if a.get("type") == "checkbox" else "")
        elif tag == "textarea":
            fields[a["name"]] = ""
        elif tag == "select":
            self._select = a["name"]
            options[a["name"]] = {}
            fields.setdefault(a["name"], "")
        elif tag == "option" and self._select:
            self._option = a.get("value", "")
            if "selected" in a:
                fields[self._select] = self._option

    def handle_data(self, data: str) -> None:
        if self._select and self._option is not None and data.strip():
            self.forms[-1][1][self._select][data.strip()] = self._option
            self._option = None

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


class Browser:
    """Cookies kept by hand: they are Secure, and this client talks plain HTTP to the pod as
    the ingress does."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**FORWARDED, "Referer": f"https://{self.base}{path}", **kwargs.pop("headers", {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = httpx.request(method, f"http://{self.base}{path}", headers=headers, timeout=30, **kwargs)
        for header in response.headers.get_list("set-cookie"):
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return response

    def form(self, path: str) -> FormParser:
        page = self.request("GET", path)
        assert page.status_code == 200, (path, page.status_code, page.text[:500])
        parser = FormParser()
        parser.feed(page.text)
        return parser

    def submit(self, path: str, values: dict[str, str]) -> httpx.Response:
        form = self.form(path)
        return self.request("POST", path, data={**form.fields, **values})


def api(base: str, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
    headers = {**FORWARDED, **({"Authorization": f"Bearer {token}"} if token else {})}
    response = httpx.request(method, f"http://{base}/api/v1{path}", json=body, headers=headers, timeout=30)
    assert response.status_code < 300, (method, path, response.status_code, response.text)
    return response.json()


def errors_of(page: httpx.Response) -> list[str]:
    return re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', page.text, flags=re.S)


# --- the test --------------------------------------------------------------------------------


def test_the_production_topology(database_url, tmp_path):
    port = free_port()
    base = f"127.0.0.1:{port}"
    shard_file = tmp_path / "shards.json"
    shard_file.write_text(json.dumps({"0": ["ETH-USDT"]}))
    env = production_env(database_url=database_url, var_dir=tmp_path / "var", static_root=tmp_path / "static")
    topology = Topology(env, tmp_path)
    commands = production_commands(port=port, shard_file=shard_file, beat_schedule=tmp_path / "beat-schedule")

    # A release: the migration Job, the image's collectstatic, and Django's deployment checks.
    for step in (["migrate", "--noinput"], ["collectstatic", "--noinput", "--verbosity", "0"]):
        done = topology.manage(*step)
        assert done.returncode == 0, (step, done.stdout[-2000:], done.stderr[-3000:])
    checked = topology.manage("check", "--deploy", "--tag", "security", "--fail-level", "WARNING")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    staff_email, staff_password = "ops@example.com", secrets.token_urlsafe(16)
    created = topology.manage(
        "createsuperuser", "--noinput", "--email", staff_email, extra_env={"DJANGO_SUPERUSER_PASSWORD": staff_password}
    )
    assert created.returncode == 0, created.stderr

    try:
        topology.start("web", commands["web"])

        def ready() -> bool:
            try:
                response = httpx.get(f"http://{base}/readyz", timeout=5)
            except httpx.HTTPError:
                return False
            return response.status_code == 200

        wait_for("the web tier's readiness", ready, topology)
        # The probes as the kubelet sends them (k8s/base/web-deployment.yaml): plain HTTP to the
        # pod's address. Another host name is refused; anything else over plain HTTP goes to HTTPS.
        readyz = httpx.get(f"http://{base}/readyz", timeout=10).json()
        assert readyz["checks"] == {"database": "ok", "cache": "ok", "channel_layer": "ok", "broker": "ok"}
        assert httpx.get(f"http://{base}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"http://{base}/healthz", headers={"Host": "elsewhere.example"}, timeout=5).status_code == 400
        assert httpx.get(f"http://{base}/api/v1/markets", timeout=5).status_code == 301

        # The staff member turns 2FA on through the API, then logs in to the back office with
        # a recovery code (the confirming TOTP code cannot be used twice).
        staff_token = api(base, "POST", "/auth/token", body={"email": staff_email, "password": staff_password})[
            "access"
        ]
        secret = api(base, "POST", "/me/2fa/totp", staff_token)["secret"]
        code = f"{TOTP(base64.b32decode(secret)).token():06d}"
        recovery = api(base, "POST", "/me/2fa/totp/confirm", staff_token, {"otp_code": code})["recovery_codes"]
        office = Browser(base)
        login = office.submit(
            "/admin/login/?next=/admin/",
            {"username": staff_email, "password": staff_password, "otp_token": recovery[0]},
        )
        assert login.status_code == 302, errors_of(login) or login.text[:2000]

        # The operator lists the currencies and the market (docs/operations.md, "Add a market").
        for code, name, precision in (("USDT", "Tether USD", "6"), ("ETH", "Ether", "18")):
            added = office.submit(
                "/admin/wallets/currency/add/", {"code": code, "name": name, "kind": "crypto", "precision": precision}
            )
            assert added.status_code == 302, errors_of(added) or added.text[:2000]
        market_form = office.form("/admin/orders/market/add/")
        added = office.submit(
            "/admin/orders/market/add/",
            {
                "symbol": "ETH-USDT",
                "base": market_form.options["base"]["ETH"],
                "quote": market_form.options["quote"]["USDT"],
                "tick_size": "0.01",
                "lot_size": "0.0001",
                "min_notional": "10",
                "maker_fee_rate": "0.001",
                "taker_fee_rate": "0.002",
                "status": "active",
            },
        )
        assert added.status_code == 302, errors_of(added) or added.text[:2000]

        for name in ("worker", "beat", "matcher"):
            topology.start(name, commands[name])

        # Two traders register; the operator funds them with the command-line adjustment.
        tokens = {}
        for trader in ("alice", "bob"):
            email, password = f"{trader}@example.com", secrets.token_urlsafe(16)
            api(base, "POST", "/auth/register", body={"email": email, "password": password, "name": trader.title()})
            tokens[trader] = api(base, "POST", "/auth/token", body={"email": email, "password": password})["access"]
        for email, currency, amount in (("alice@example.com", "ETH", "2"), ("bob@example.com", "USDT", "5000")):
            credited = topology.manage(
                "credit",
                email,
                currency,
                amount,
                "--reason",
                "opening deposit",
                "--operator",
                staff_email,
                "--idempotency-key",
                f"opening:{email}",
            )
            assert credited.returncode == 0, credited.stderr

        # Bob watches the market and his fills on the socket, then they trade through REST.
        with connect(f"ws://{base}/ws/v1/", origin="http://127.0.0.1", open_timeout=30) as ws:

            def until(match: Callable[[dict], bool]) -> dict:
                deadline = time.monotonic() + READY_WITHIN
                while True:
                    left = deadline - time.monotonic()
                    assert left > 0, "no matching frame on the socket"
                    frame = json.loads(ws.recv(timeout=left))
                    if match(frame):
                        return frame

            ws.send(json.dumps({"op": "auth", "token": tokens["bob"]}))
            assert until(lambda f: f.get("op") in {"authenticated", "error"})["op"] == "authenticated"
            ws.send(json.dumps({"op": "subscribe", "channels": ["trades.ETH-USDT", "trades"]}))
            until(lambda f: f.get("op") == "subscribed")

            order = {"market": "ETH-USDT", "type": "limit", "price": "2000", "quantity": "1"}
            maker = api(base, "POST", "/orders", tokens["alice"], {**order, "side": "sell"})
            taker = api(base, "POST", "/orders", tokens["bob"], {**order, "side": "buy"})
            # The public and the private channel come from different channel layers: either
            # frame may arrive first, so both are collected, in whatever order they come.
            public = private = None
            while public is None or private is None:
                frame = until(lambda f: f.get("op") == "update" and f.get("channel") in {"trades.ETH-USDT", "trades"})
                if frame["channel"] == "trades":
                    private = private or frame
                else:
                    public = public or frame

        [trade] = public["data"]
        assert (Decimal(trade["price"]), Decimal(trade["quantity"])) == (Decimal(2000), Decimal(1))
        assert private["data"]["order_id"] == taker["id"]
        assert (private["data"]["role"], Decimal(private["data"]["fee"])) == ("taker", Decimal("4"))
        assert api(base, "GET", f"/orders/{maker['id']}", tokens["alice"])["status"] == "filled"

        def balances(trader: str) -> dict[str, tuple[Decimal, Decimal]]:
            wallets = api(base, "GET", "/wallets", tokens[trader])
            return {w["currency"]: (Decimal(w["available"]), Decimal(w["locked"])) for w in wallets}

        # Maker fee 0.1 % of 2000 from the seller, taker fee 0.2 % on top for the buyer.
        assert balances("alice") == {"ETH": (Decimal(1), 0), "USDT": (Decimal(1998), 0)}
        assert balances("bob") == {"ETH": (Decimal(1), 0), "USDT": (Decimal(2996), 0)}

        # The back office's dashboard and the metrics endpoint of the scraper.
        dashboard = office.request("GET", "/admin/dashboard/")
        assert dashboard.status_code == 200, dashboard.text[:1000]

        def scrape(**headers: str) -> httpx.Response:
            """As Prometheus scrapes the web Service: plain HTTP, addressed by the Service's name."""
            service = {"Host": "kootabase-web.kootabase.svc"}
            return httpx.get(f"http://{base}/metrics", headers={**service, **headers}, timeout=30)

        metrics = scrape(Authorization=f"Bearer {env['METRICS_TOKEN']}")
        assert metrics.status_code == 200, metrics.text[:1000]
        assert "# TYPE " in metrics.text
        assert scrape().status_code == 404
        # The worker, started as its Deployment starts it, reports its heartbeat to the monitoring.
        worker_up = f'kootabase_celery_worker_up{{worker="celery@{socket.gethostname()}"}} 1.0'
        wait_for(
            "the worker's heartbeat in /metrics",
            lambda: worker_up in scrape(Authorization=f"Bearer {env['METRICS_TOKEN']}").text,
            topology,
        )

        # Beat sends the deposit scan every 5 s to the blockchain queue; the worker runs it.
        wait_for(
            "a scheduled deposit scan run by the worker",
            lambda: re.search(r"blockchain\.tasks\.scan_deposits\[[\w-]+\] succeeded", topology.log("worker")),
            topology,
        )
        assert "Sending due task blockchain-scan-deposits" in topology.log("beat")

        # Stopped as for a release: the scheduler first; the rest once the worker has run
        # everything queued (nothing is left in the broker for whoever consumes it next).
        codes = topology.stop("beat")
        wait_for("the queues drained", lambda: queued(env["CELERY_BROKER_URL"]) == 0, topology)
        topology.alive()
        codes |= topology.stop("web", "worker", "matcher")
    finally:
        topology.kill_leftovers()
    assert codes == {"web": 0, "worker": 0, "beat": 0, "matcher": 0}, {
        name: topology.log(name)[-2000:] for name, code in codes.items() if code != 0
    }

    audit = topology.manage("ledger_audit")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "Ledger audit passed" in audit.stdout
