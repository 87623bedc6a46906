"""Load the demo data of every app, idempotently.

Each app that has demo data defines ``<app>/demo.py`` with ``seed() -> list[str]``; they
run in INSTALLED_APPS order (accounts before wallets before orders), so later apps can
rely on what earlier ones created.
"""

from __future__ import annotations

import importlib
import importlib.util

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction


def seed_all() -> list[str]:
    lines: list[str] = []
    for app_config in apps.get_app_configs():
        module_name = f"{app_config.name}.demo"
        if importlib.util.find_spec(module_name) is None:
            continue
        with transaction.atomic():
            lines.extend(importlib.import_module(module_name).seed())
    return lines


class Command(BaseCommand):
    help = "Create the demo accounts, currencies, balances and markets (safe to run again)."

    def handle(self, *args, **options) -> None:
        for line in seed_all():
            self.stdout.write(line)
