"""Per-process catalogs (kootabase.catalog): reloaded when the shared version moves, and
still serving when the shared cache is unreachable."""

from __future__ import annotations

import pytest

from kootabase import catalog as catalog_module
from kootabase.catalog import Catalog
from wallets import services
from wallets.models import Currency

pytestmark = pytest.mark.django_db


class _Unreachable:
    def _fail(self, *args, **kwargs):
        raise ConnectionError("the shared cache is down")

    get = add = set = _fail


def _codes_catalog(loads: list[int]) -> Catalog:
    def load() -> list[str]:
        loads.append(1)
        return sorted(Currency.objects.values_list("code", flat=True))

    return Catalog("tests.codes", load, watched=())


def test_a_moved_version_reloads_and_an_unmoved_one_does_not(monkeypatch):
    services.currency_create(code="USDT", name="Tether", kind=Currency.Kind.CRYPTO, precision=6)
    loads: list[int] = []
    codes = _codes_catalog(loads)
    monkeypatch.setattr(codes, "check_interval", 0.0)
    assert codes.get() == ["USDT"] and codes.get() == ["USDT"]
    assert len(loads) == 1
    services.currency_create(code="BTC", name="Bitcoin", kind=Currency.Kind.CRYPTO, precision=8)
    codes.changed()  # what a save of a watched model does
    assert codes.get() == ["BTC", "USDT"] and len(loads) == 2


def test_an_unreachable_shared_cache_keeps_the_copy_and_reloads_it_by_age(monkeypatch, caplog):
    services.currency_create(code="USDT", name="Tether", kind=Currency.Kind.CRYPTO, precision=6)
    loads: list[int] = []
    codes = _codes_catalog(loads)
    assert codes.get() == ["USDT"]
    monkeypatch.setattr(catalog_module, "cache", _Unreachable())
    monkeypatch.setattr(codes, "check_interval", 0.0)
    assert codes.get() == ["USDT"] and len(loads) == 1  # kept, nothing raised
    assert "unreachable" in caplog.text
    services.currency_create(code="BTC", name="Bitcoin", kind=Currency.Kind.CRYPTO, precision=8)
    codes.changed()  # cannot reach the others: logged; this process reloads at once
    assert codes.get() == ["BTC", "USDT"] and len(loads) == 2
    monkeypatch.setattr(codes, "max_age", 0.0)
    codes.get()
    assert len(loads) == 3  # past max_age: read again from the database
