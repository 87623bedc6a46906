"""Production settings refuse to start half-configured; development needs nothing."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "k7#Qe9!vR2@xL5&mZ8^tW1*pN4(sB6)yD3_hJ0+cF"  # not a real key
    "-test-only-9aGvT",
    "DATABASE_URL": "sqlite:////tmp/kootabase-settings-test.sqlite3",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "CELERY_BROKER_URL": "memory://",
    "ALLOWED_HOSTS": "exchange.example.com",
    "API_KEY_ENCRYPTION_KEY": "dGVzdC1vbmx5LW5vdC1hLXJlYWwta2V5LTMyYnl0ZXM=",  # not a real key
    "HD_WALLET_MNEMONIC": "test test test test test test test test test test test junk",  # not a real seed
    "HOT_WALLET_PRIVATE_KEY": "0x" + "11" * 32,  # not a real key
}


def _load_settings(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='kootabase.settings'; django.setup();"
        "from django.conf import settings as s;"
        "print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.DATABASE_VENDOR)"
    )
    base = {k: v for k, v in os.environ.items() if k not in PRODUCTION and k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "KOOTABASE_VAR_DIR": str(tmp_path), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_switches_on_the_secure_settings(tmp_path):
    result = _load_settings(PRODUCTION, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True", "31536000", "sqlite"]


def test_production_requires_secret_key_and_servers(tmp_path):
    for missing in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "API_KEY_ENCRYPTION_KEY"):
        env = {k: v for k, v in PRODUCTION.items() if k != missing}
        result = _load_settings(env, tmp_path)
        assert result.returncode != 0, missing
        assert missing in result.stderr


def test_development_generates_its_secret_key_once(tmp_path):
    first = _load_settings({}, tmp_path)
    assert first.returncode == 0, first.stderr
    key = (tmp_path / "secret_key").read_text()
    assert len(key) >= 50
    assert _load_settings({}, tmp_path).returncode == 0
    assert (tmp_path / "secret_key").read_text() == key
    assert first.stdout.split()[:2] == ["True", "False"]


def test_production_passes_the_deploy_checklist(tmp_path):
    base = {k: v for k, v in os.environ.items() if k not in PRODUCTION and k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env={**base, "KOOTABASE_VAR_DIR": str(tmp_path), **PRODUCTION},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
