"""The process's catalog of currencies: lookups by code and by id cost no query once
loaded, give the caller its own copy, and see a currency switched off at once."""

from __future__ import annotations

from wallets import catalog
from wallets.models import Currency
from wallets.tests.factories import CurrencyFactory


def test_currencies_by_id_cost_no_query_once_loaded(db, django_assert_num_queries):
    eth, usdt = CurrencyFactory(code="ETH"), CurrencyFactory(code="USDT", precision=6)
    catalog.currencies_by_id([eth.pk])
    with django_assert_num_queries(0):
        found = catalog.currencies_by_id([eth.pk, usdt.pk])
    assert {pk: c.code for pk, c in found.items()} == {eth.pk: "ETH", usdt.pk: "USDT"}


def test_callers_get_their_own_copy(db):
    eth = CurrencyFactory(code="ETH")
    catalog.currencies_by_id([eth.pk])[eth.pk].is_active = False
    assert catalog.currencies_by_id([eth.pk])[eth.pk].is_active


def test_a_currency_switched_off_is_seen_by_the_next_lookup(db):
    eth = CurrencyFactory(code="ETH")
    assert catalog.currencies_by_id([eth.pk])[eth.pk].is_active
    eth.is_active = False
    eth.save()
    assert not catalog.currencies_by_id([eth.pk])[eth.pk].is_active


def test_one_the_catalog_does_not_hold_yet_is_read_from_the_database(db, django_assert_num_queries):
    usdt = CurrencyFactory(code="USDT")
    catalog.currencies_by_id([usdt.pk])
    # Saved without signals, as by another process within the catalog's check interval.
    Currency.objects.bulk_create([CurrencyFactory.build(code="ETH")])
    eth = Currency.objects.get(code="ETH")
    with django_assert_num_queries(1):
        found = catalog.currencies_by_id([usdt.pk, eth.pk, eth.pk + 1000])
    assert {pk: c.code for pk, c in found.items()} == {usdt.pk: "USDT", eth.pk: "ETH"}
