"""The rules engine and the block-list file on their own: which rows apply, what each rule
flags, and the block-list read again when its file changes."""

from __future__ import annotations

import importlib
import os
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from aml import blocklist, rules
from aml.models import ItemKind, RuleName, RuleParameter
from aml.tests.conftest import limit
from wallets.models import Currency
from wallets.tests.factories import CurrencyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def usdt(db) -> Currency:
    return CurrencyFactory(code="USDT", precision=6)


def item(currency: Currency, amount: str, *, kind: str = ItemKind.TRANSFER, counterparty: str = "bob@example.com"):
    return rules.Item(
        kind=kind,
        id=1,
        user_id=1,
        user_email="alice@example.com",
        currency_id=currency.pk,
        currency_code=currency.code,
        amount=Decimal(amount),
        counterparty=counterparty,
        at=timezone.now(),
    )


def test_the_defaults_are_seeded_and_flag_nothing_ordinary(usdt):
    seeded = set(RuleParameter.objects.values_list("rule", "kind"))
    assert {
        ("velocity", "deposit"),
        ("velocity", "withdrawal"),
        ("velocity", "transfer"),
        ("fresh_deposit", "withdrawal"),
        ("blocklist", ""),
    } <= seeded
    assert rules.evaluate(item(usdt, "1000000")) == []


def test_the_threshold_flags_at_and_above_its_amount_in_its_currency_only(usdt):
    other = CurrencyFactory(code="EUR", precision=2)
    limit(RuleName.THRESHOLD, ItemKind.TRANSFER, "USDT", amount=Decimal(1000))
    assert rules.evaluate(item(usdt, "999.999999")) == []
    hits = rules.evaluate(item(usdt, "1000"))
    assert [h.rule for h in hits] == ["threshold"] and "review threshold 1000" in hits[0].reason
    assert rules.evaluate(item(other, "5000")) == []
    assert rules.evaluate(item(usdt, "5000", kind=ItemKind.DEPOSIT)) == []  # a transfer limit


def test_a_row_for_every_kind_applies_to_each_and_a_disabled_row_to_none(usdt):
    row = limit(RuleName.THRESHOLD, "", "USDT", amount=Decimal(10))
    assert all(rules.evaluate(item(usdt, "10", kind=kind)) for kind in ItemKind.values)
    row.enabled = False
    row.save()
    assert not any(rules.evaluate(item(usdt, "10", kind=kind)) for kind in ItemKind.values)


def test_the_lowest_of_several_thresholds_counts(usdt):
    limit(RuleName.THRESHOLD, ItemKind.TRANSFER, "USDT", amount=Decimal(500))
    limit(RuleName.THRESHOLD, "", "USDT", amount=Decimal(100))
    assert "review threshold 100" in rules.evaluate(item(usdt, "100"))[0].reason


def test_the_parameters_come_in_one_query(usdt, django_assert_num_queries):
    limit(RuleName.THRESHOLD, ItemKind.TRANSFER, "USDT", amount=Decimal(1))
    with django_assert_num_queries(1):
        parameters = rules.parameters_for(kind=ItemKind.TRANSFER)
    assert {p.rule for p in parameters} == {"threshold", "velocity", "blocklist"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rule": "threshold"}, "A threshold needs an amount and a currency."),
        ({"rule": "threshold", "amount": Decimal(5)}, "An amount must be greater than zero and needs a currency."),
        ({"rule": "velocity", "window_minutes": 60}, "A velocity limit needs a window and a count"),
        ({"rule": "velocity", "count": 3}, "A velocity limit needs a window and a count"),
        ({"rule": "velocity", "count": 3, "window_minutes": 0}, "The window is at least one minute."),
        ({"rule": "fresh_deposit", "kind": "transfer", "window_minutes": 60}, "applies to withdrawals"),
    ],
)
def test_rows_that_make_no_sense_are_refused(fields, message):
    row = RuleParameter(**fields)
    with pytest.raises(ValidationError, match=message):
        row.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        row.save()


def test_the_blocklist_format_comments_blank_lines_and_case():
    text = """# the operator's list
    0xAbC0000000000000000000000000000000000001   # sanctioned
    Mallory@Example.com

    # 0x0000000000000000000000000000000000000002 is commented out
    """
    assert blocklist.parse(text) == {"0xabc0000000000000000000000000000000000001", "mallory@example.com"}


def test_the_blocklist_is_read_again_when_its_file_changes(blocklist_file, usdt):
    assert not blocklist.is_blocked("mallory@example.com")
    assert rules.evaluate(item(usdt, "1", counterparty="mallory@example.com")) == []

    blocklist_file.write_text("mallory@example.com\n")
    hits = rules.evaluate(item(usdt, "1", counterparty="Mallory@example.com"))
    assert [h.rule for h in hits] == ["blocklist"] and "on the block-list" in hits[0].reason

    blocklist_file.write_text("# cleared\n")
    assert rules.evaluate(item(usdt, "1", counterparty="mallory@example.com")) == []

    replacement = blocklist_file.with_name("new-list.txt")  # replaced whole, as a ConfigMap update does
    replacement.write_text("alice@example.com\n")
    os.replace(replacement, blocklist_file)
    assert [h.reason for h in rules.evaluate(item(usdt, "1"))] == ["user alice@example.com is on the block-list"]


def test_a_missing_blocklist_file_blocks_nothing(blocklist_file, settings, usdt):
    blocklist_file.write_text("bob@example.com\n")
    assert rules.evaluate(item(usdt, "1"))
    settings.AML_BLOCKLIST_FILE = str(blocklist_file.with_name("absent.txt"))
    assert rules.evaluate(item(usdt, "1")) == []


@pytest.mark.django_db(transaction=True)  # the schema goes back and forth
def test_the_data_migration_turns_the_old_asset_review_thresholds_into_threshold_rules(chain, network, usdt_asset):
    """Migration 0002 seeds the defaults and moves each currency's lowest per-asset review
    threshold (the old withdrawal rule) into a threshold row for withdrawals; the column
    is dropped after it (blockchain 0004). Run on the schema as it was before the drop."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    migration = importlib.import_module("aml.migrations.0002_default_rules")
    before = [("blockchain", "0003_case_sensitive_keys"), ("aml", "0002_default_rules")]
    executor = MigrationExecutor(connection)
    executor.migrate([before[0]])  # the column back, empty
    try:
        old = MigrationExecutor(connection).loader.project_state(before).apps
        old.get_model("blockchain", "Asset").objects.filter(pk=usdt_asset.pk).update(review_threshold=Decimal(2500))
        old.get_model("blockchain", "Asset").objects.exclude(pk=usdt_asset.pk).update(review_threshold=None)
        RuleParameter.objects.all().delete()
        migration.seed(old, None)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    threshold = RuleParameter.objects.get(rule="threshold")
    assert (threshold.kind, threshold.currency, threshold.amount) == ("withdrawal", usdt_asset.currency, Decimal(2500))
    assert RuleParameter.objects.count() == len(migration.DEFAULTS) + 1
    with connection.cursor() as cursor:
        columns = {c.name for c in connection.introspection.get_table_description(cursor, "blockchain_asset")}
    assert "review_threshold" not in columns and "withdrawal_fee" in columns


def test_the_demo_thresholds_are_seeded_once_per_currency_and_kind():
    from aml import demo
    from wallets import demo as wallets_demo

    wallets_demo.seed()
    demo.seed()
    lines = demo.seed()
    thresholds = RuleParameter.objects.filter(rule="threshold")
    assert thresholds.count() == len(demo.THRESHOLDS) * len(ItemKind.values)
    assert thresholds.get(kind="withdrawal", currency__code="ETH").amount == Decimal(100)
    assert lines == ["aml     review thresholds: ETH 100, USDT 100000, BTC 5, USD 50000"]
