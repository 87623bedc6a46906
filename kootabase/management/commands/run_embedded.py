"""Run the whole exchange on one machine with no servers to install.

Migrates, loads the demo data, then starts the processes the production topology has,
on embedded backends: the ASGI server (uvicorn) in the foreground and the Celery worker
with its beat scheduler in the background. Ctrl-C stops them all.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from kootabase.celery import QUEUES
from kootabase.management.commands.demo_data import seed_all


def background_processes() -> dict[str, list[str]]:
    """The worker processes that run beside the web server, by name."""
    python = sys.executable
    processes = {
        "celery worker + beat": [
            python,
            "-m",
            "celery",
            "-A",
            "kootabase",
            "worker",
            "--beat",
            "--queues",
            ",".join(QUEUES),
            "--concurrency",
            "2",
            "--loglevel",
            "WARNING",
            "--schedule",
            str(Path(settings.VAR_DIR) / "celerybeat-schedule"),
        ],
    }
    # The embedded chain (docs/blockchain.md): one process owns the in-process EVM and
    # serves it on 127.0.0.1 to the web process and the worker, unless a node is configured.
    if settings.BLOCKCHAIN_EMBEDDED_CHAIN.startswith("http://127.0.0.1"):
        processes["chain"] = [python, str(Path(settings.BASE_DIR) / "manage.py"), "run_chain"]
    # One single-writer matcher process for every market (see docs/orders.md) -
    # with Redis only. Without it the channel layer is in-process memory, so the web
    # process runs the matchers itself, in threads (marketdata.embedded, docs/marketdata.md).
    if not settings.REDIS_URL:
        return processes
    from orders.models import Market

    symbols = list(Market.objects.values_list("symbol", flat=True))  # every status: see orders.controls
    if symbols:
        markets = [arg for symbol in symbols for arg in ("--market", symbol)]
        processes["matcher"] = [python, str(Path(settings.BASE_DIR) / "manage.py"), "run_matcher", *markets]
    return processes


class Command(BaseCommand):
    help = "Start Kootabase on embedded defaults (SQLite, in-process layers, file broker) with demo data."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, **options) -> None:
        host, port = options["host"], options["port"]
        call_command("migrate", interactive=False, verbosity=0)
        demo_lines = seed_all()

        children: list[tuple[str, subprocess.Popen]] = []
        for name, argv in background_processes().items():
            children.append((name, subprocess.Popen(argv)))
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "kootabase.asgi:application",
                "--host",
                host,
                "--port",
                str(port),
                "--log-level",
                "warning",
            ]
        )
        children.append(("web (uvicorn)", server))

        def stop(*_: object) -> None:
            for _, proc in reversed(children):
                if proc.poll() is None:
                    proc.terminate()
            for _, proc in children:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()

        signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
        base = f"http://{host}:{port}"
        try:
            self._wait_ready(f"{base}/healthz", server)
            self.stdout.write(self._banner(base, demo_lines, [name for name, _ in children]))
            while all(proc.poll() is None for _, proc in children):
                time.sleep(0.5)
            for name, proc in children:
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with code {proc.returncode}; stopping.")
        except KeyboardInterrupt:
            pass
        finally:
            stop()

    @staticmethod
    def _wait_ready(url: str, server: subprocess.Popen, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"the web server exited with code {server.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own loopback server
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"the web server did not answer {url} within {timeout:.0f}s")

    @staticmethod
    def _banner(base: str, demo_lines: list[str], processes: list[str]) -> str:
        lines = [
            "",
            "Kootabase is running (embedded: SQLite, in-process layers, file-based task broker).",
            "",
            f"  API docs     {base}/api/docs/",
            f"  OpenAPI      {base}/api/schema/",
            f"  Back office  {base}/admin/",
            f"  REST API     {base}/api/v1/",
            f"  WebSocket    ws://{base.split('://', 1)[1]}/ws/v1/",
            f"  Health       {base}/healthz   {base}/readyz",
            "",
            "Demo accounts:",
            *[f"  {line}" for line in demo_lines],
            "",
            f"Processes: {', '.join(processes)}. Press Ctrl-C to stop.",
            "",
        ]
        return "\n".join(lines)
