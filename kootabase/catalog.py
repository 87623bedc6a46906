"""Per-process copies of small, rarely changed tables that a hot path reads every time.

Markets and fee tiers (every order), currencies (every money movement), the AML rule
parameters and the KYC tiers (every transfer and withdrawal) are a few rows each, read
far more often than they change. A ``Catalog`` keeps such rows in the process and checks
them against a version number in the shared cache (Redis in production): one GET, at
most every ``check_interval`` seconds, and a reload when it moved. Every save or delete
of one of the catalog's models bumps the version (``changed``): once at once, once more
after the commit, so a reader that reloaded in between does not keep the old rows. The
process that made a change sees it at its next lookup; the others within
``check_interval``. A copy is also never older than ``max_age`` seconds, which bounds
staleness where the cache is not shared (the embedded setup's per-process memory cache),
a change bypassed the signals (``QuerySet.update``) or the shared cache is unreachable
(then the copies are simply reloaded every ``max_age`` seconds, and nothing fails).

The loaded value is shared by every thread of the process: callers treat it as read-only
(and copy a model instance before changing it).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from django.core.cache import cache
from django.db import models, transaction
from django.db.models.signals import post_delete, post_save

T = TypeVar("T")

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 0.25  # seconds between reads of the shared version
MAX_AGE = 5.0  # seconds

_catalogs: list[Catalog] = []
_forgetters: list[Callable[[], None]] = []


class Catalog(Generic[T]):
    """``load()``'s result, kept per process and reloaded when one of ``watched`` changes."""

    def __init__(self, name: str, load: Callable[[], T], *, watched: Iterable[type[models.Model]]) -> None:
        self.name = name
        self.version_key = f"catalog:{name}:version"
        self.check_interval = CHECK_INTERVAL
        self.max_age = MAX_AGE
        self._load = load
        self._value: tuple[str, float, T] | None = None  # (version, loaded at, value)
        self._checked: tuple[float, str] = (float("-inf"), "")  # when the version was last read, and its value
        self._lock = threading.Lock()
        for model in watched:
            uid = f"catalog.{name}.{model._meta.label}"
            post_save.connect(self._on_change, sender=model, dispatch_uid=f"{uid}.save", weak=False)
            post_delete.connect(self._on_change, sender=model, dispatch_uid=f"{uid}.delete", weak=False)
        _catalogs.append(self)

    def get(self) -> T:
        """The current value: loaded now if the shared version moved or the copy is too old."""
        version = self._shared_version()
        current = self._value
        if current is not None and current[0] == version and time.monotonic() - current[1] < self.max_age:
            return current[2]
        with self._lock:
            current = self._value
            if current is None or current[0] != version or time.monotonic() - current[1] >= self.max_age:
                current = self._value = (version, time.monotonic(), self._load())
        return current[2]

    def changed(self) -> None:
        """Make every process reload: now, and again once the change is committed."""
        self._bump()
        transaction.on_commit(self._bump)

    def forget(self) -> None:
        """Drop the process's copy: the next lookup loads again (for tests, whose database
        starts over under a running process)."""
        self._value, self._checked = None, (float("-inf"), "")

    def _bump(self) -> None:
        self._checked = (float("-inf"), "")  # this process reads the new version at its next lookup
        self._value = None
        try:
            cache.set(self.version_key, uuid.uuid4().hex, None)
        except Exception:  # the other processes see the change within max_age instead
            logger.warning("catalog %s: could not publish a change to the shared cache", self.name, exc_info=True)

    def _on_change(self, sender: type, **kwargs: object) -> None:
        self.changed()

    def _shared_version(self) -> str:
        now = time.monotonic()
        checked_at, version = self._checked
        if now - checked_at < self.check_interval:
            return version
        try:
            version = cache.get(self.version_key)
            if version is None:
                version = uuid.uuid4().hex
                if not cache.add(self.version_key, version, None):
                    version = cache.get(self.version_key) or version
        except Exception:
            # The shared cache is unreachable: keep the copy (it is reloaded once older
            # than max_age), and do not hold up the money path that asked.
            logger.warning("catalog %s: the shared cache is unreachable", self.name, exc_info=True)
            current = self._value
            version = current[0] if current is not None else uuid.uuid4().hex
        self._checked = (now, version)
        return version


def on_forget(forget: Callable[[], None]) -> None:
    """Have ``forget_all`` call ``forget`` too (for other per-process copies of rows)."""
    _forgetters.append(forget)


def forget_all() -> None:
    """Drop every catalog's copy in this process (see ``Catalog.forget``), and every other
    per-process copy of rows registered with ``on_forget``."""
    for catalog in _catalogs:
        catalog.forget()
    for forget in _forgetters:
        forget()
