"""Only the process that runs the EVM loads it.

py-evm (the ``eth`` package, under eth-tester) raises the interpreter's recursion limit
process-wide when imported, and so does py_ecc (under eth_account). With a raised limit a
deep recursion overruns the C stack (a segfault) instead of raising RecursionError. The
web process, the Celery worker and the matcher, in production and in the embedded run,
start with neither ``eth`` nor ``eth_tester`` loaded and with the interpreter's own limit.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kootabase.tests.test_settings import PRODUCTION, ROOT

# What each process imports before it serves: the ASGI application (uvicorn), the Celery
# app with every task module (the worker imports them at start), the matcher's command,
# the chain adapter the web process and the worker connect to nodes with, and the
# embedded run's launcher with every app's demo data (``make run``).
PROBE = """
import importlib, importlib.util, json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "kootabase.settings"
import django
django.setup()
import kootabase.asgi
from kootabase.celery import app
app.loader.import_default_modules()
import orders.management.commands.run_matcher
import blockchain.chains.evm
import kootabase.management.commands.run_embedded
from django.apps import apps
for config in apps.get_app_configs():
    if importlib.util.find_spec(config.name + ".demo") is not None:
        importlib.import_module(config.name + ".demo")
print(json.dumps({
    "eth": "eth" in sys.modules,
    "eth_tester": "eth_tester" in sys.modules,
    "recursion_limit": sys.getrecursionlimit(),
    "loaded": sorted(m for m in ("blockchain.tasks", "blockchain.demo", "orders.tasks") if m in sys.modules),
}))
"""

ENVIRONMENTS = {
    "production": {**PRODUCTION, "ETH_RPC_URL": "http://127.0.0.1:8545"},
    "development": {},
}


def _run(code: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    cleared = {*PRODUCTION, "DJANGO_SETTINGS_MODULE", "ETH_RPC_URL", "BLOCKCHAIN_RPC_URLS"}
    base = {k: v for k, v in os.environ.items() if k not in cleared}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "KOOTABASE_VAR_DIR": str(tmp_path), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_web_worker_and_matcher_do_not_load_the_evm(environment, tmp_path):
    default = _run("import sys; print(sys.getrecursionlimit())", {}, tmp_path)
    assert default.returncode == 0, default.stderr
    env = dict(ENVIRONMENTS[environment])
    if environment == "production":
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    result = _run(PROBE, env, tmp_path)
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout.splitlines()[-1])
    assert state == {
        "eth": False,
        "eth_tester": False,
        "recursion_limit": int(default.stdout),
        "loaded": ["blockchain.demo", "blockchain.tasks", "orders.tasks"],
    }
