"""Settings for the test suite: the same as the real ones, with fast hashing and an
in-memory Celery transport served by an in-process worker where a test needs one."""

import os

os.environ.setdefault("DJANGO_ENV", "test")

from .settings import *  # noqa: F403
from .settings import CELERY_BROKER_URL as _configured_broker

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEBUG = False
# Without a broker from the environment, tests run a real worker thread on kombu's
# in-memory transport (see conftest.celery_worker); with one, they use it.
if _configured_broker.startswith("filesystem://"):
    CELERY_BROKER_URL = "memory://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
# Monitoring counters in the test process's memory, apart from a running instance's file.
MONITORING_STORE_PATH = ":memory:"
# Each test runs in a transaction of its own connection, which the placement thread's
# connection could not see: requests place their orders themselves. The grouping's own
# tests switch it on (orders/tests/test_group_placement.py).
ORDER_PLACEMENT_GROUPING = False
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
