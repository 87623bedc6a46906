"""Operator tools: credit/debit commands, the admin adjustment, the audit (command, task,
stored results), demo data and roles."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client

from accounts.tests.helpers import admin_login
from kootabase.celery import app as celery_app
from wallets import services
from wallets.models import AccountKind, Adjustment, AuditRun, EntryKind, JournalEntry, LedgerAccount, LedgerLeg
from wallets.services import Leg
from wallets.tasks import ledger_audit
from wallets.tests.factories import UserFactory, fund


def available(user, currency) -> Decimal:
    account = LedgerAccount.objects.filter(user=user, currency=currency, kind="available").first()
    return account.balance if account else Decimal(0)


def staff(role: str):
    member = UserFactory(email=f"{role}@staff.example.com", is_staff=True)
    member.groups.add(Group.objects.get(name=role))
    return member


# --- credit / debit commands ----------------------------------------------------------


@pytest.mark.django_db
def test_credit_and_debit_commands_post_adjustments(alice, usdt, capsys):
    operator = staff("accountant")
    call_command("credit", alice.email, "usdt", "250.5", reason="Wire 123 received", operator=operator.email)
    call_command("debit", alice.email, "USDT", "0.5", reason="Bank fee correction")
    assert available(alice, usdt) == Decimal(250)
    credit, debit = Adjustment.objects.order_by("id")
    assert (credit.amount, credit.reason, credit.created_by) == (Decimal("250.5"), "Wire 123 received", operator)
    assert credit.actor.startswith("command:") and credit.actor.endswith(f"as {operator.email}")
    assert (debit.amount, debit.created_by) == (Decimal("-0.5"), None)
    assert JournalEntry.objects.filter(kind="adjustment", reference=credit.reference).exists()
    assert "Credited 250.5 USDT to alice@example.com" in capsys.readouterr().out
    assert services.ledger_audit_run().ok
    # Both land in the staff audit trail, with who, why and how much.
    from audit.models import AuditEvent

    events = list(AuditEvent.objects.filter(action="wallets.adjustment_posted").order_by("id"))
    assert [(e.actor, e.details["direction"], e.details["amount"]) for e in events] == [
        (operator, "credit", "250.5"),
        (None, "debit", "0.5"),
    ]
    assert events[0].details["reason"] == "Wire 123 received"


@pytest.mark.django_db
def test_a_replayed_adjustment_is_audited_once(alice, usdt):
    from audit.models import AuditEvent

    for _ in range(2):
        call_command("credit", alice.email, "USDT", "10", reason="r", idempotency_key="wire-audit")
    assert AuditEvent.objects.filter(action="wallets.adjustment_posted").count() == 1


@pytest.mark.django_db
def test_the_credit_command_is_idempotent_with_a_key(alice, usdt):
    for _ in range(2):
        call_command("credit", alice.email, "USDT", "10", reason="r", idempotency_key="wire-77")
    assert available(alice, usdt) == Decimal(10)
    with pytest.raises(CommandError, match="idempotency_conflict"):
        call_command("credit", alice.email, "USDT", "11", reason="r", idempotency_key="wire-77")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alice@example.com", "USDT", "5"], "insufficient_funds"),  # debit more than held
        (["alice@example.com", "USDT", "0"], "greater than zero"),
        (["alice@example.com", "USDT", "1e3"], "amount"),
        (["alice@example.com", "USDT", "0.0000001"], "amount_precision"),
        (["alice@example.com", "XYZ", "1"], "unknown_currency"),
        (["nobody@example.com", "USDT", "1"], "No active user"),
    ],
)
def test_bad_debits_are_refused_and_change_nothing(alice, usdt, unchanged_ledger, args, message):
    fund(alice, usdt, "1")
    with unchanged_ledger(), pytest.raises(CommandError, match=message):
        call_command("debit", *args, reason="oops")


@pytest.mark.django_db
def test_an_adjustment_needs_a_reason(alice, usdt, unchanged_ledger):
    with unchanged_ledger(), pytest.raises(CommandError, match="reason_required"):
        call_command("credit", alice.email, "USDT", "1", reason="   ")


# --- The admin ------------------------------------------------------------------------


def adjustment_form(user, currency, **overrides):
    return {
        "user": user.pk,
        "currency": currency.pk,
        "direction": "credit",
        "amount": "75.25",
        "reason": "Fiat deposit, bank ref 42",
        **overrides,
    }


@pytest.mark.django_db
def test_an_accountant_posts_an_adjustment_in_the_admin(alice, usdt):
    accountant = staff("accountant")
    client = admin_login(Client(), accountant)
    assert client.get("/admin/wallets/adjustment/add/").status_code == 200
    response = client.post("/admin/wallets/adjustment/add/", adjustment_form(alice, usdt))
    assert response.status_code == 302, response.content.decode()[:3000]
    adjustment = Adjustment.objects.get()
    assert (adjustment.amount, adjustment.created_by, adjustment.actor) == (
        Decimal("75.25"),
        accountant,
        f"admin:{accountant.email}",
    )
    assert available(alice, usdt) == Decimal("75.25")
    assert client.get(f"/admin/wallets/adjustment/{adjustment.pk}/change/").status_code == 200  # view only
    assert services.ledger_audit_run().ok


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"direction": "debit", "amount": "1000"}, "Insufficient USDT funds"),
        ({"amount": "0.0000001"}, "at most 6 decimal places"),
        ({"amount": "0"}, "greater than zero"),
        ({"reason": ""}, "This field is required"),
    ],
)
def test_a_refused_admin_adjustment_shows_why_and_moves_nothing(alice, usdt, unchanged_ledger, overrides, error):
    fund(alice, usdt, "10")
    client = admin_login(Client(), staff("accountant"))
    with unchanged_ledger():
        response = client.post("/admin/wallets/adjustment/add/", adjustment_form(alice, usdt, **overrides))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert Adjustment.objects.count() == 1  # the funding only


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["support", "compliance", "admin", "market-operator"])
def test_only_accountants_may_post_adjustments(alice, usdt, unchanged_ledger, role):
    client = admin_login(Client(), staff(role))
    with unchanged_ledger():
        assert client.get("/admin/wallets/adjustment/add/").status_code == 403
        assert client.post("/admin/wallets/adjustment/add/", adjustment_form(alice, usdt)).status_code == 403
    assert Adjustment.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["accountant", "support", "compliance", "admin"])
def test_nobody_edits_a_balance_or_the_ledger(alice, usdt, unchanged_ledger, role):
    fund(alice, usdt, "10")
    client = admin_login(Client(), staff(role))
    account = LedgerAccount.objects.get(user=alice, kind=AccountKind.AVAILABLE)
    entry = JournalEntry.objects.get()
    leg = LedgerLeg.objects.filter(account=account).get()
    assert client.get("/admin/wallets/ledgeraccount/").status_code == 200
    assert client.get(f"/admin/wallets/ledgeraccount/{account.pk}/change/").status_code == 200
    assert client.get(f"/admin/wallets/journalentry/{entry.pk}/change/").status_code == 200
    with unchanged_ledger():
        for path, data in [
            (f"/admin/wallets/ledgeraccount/{account.pk}/change/", {"balance": "1000000"}),
            (f"/admin/wallets/ledgerleg/{leg.pk}/change/", {"amount": "1000000"}),
            (f"/admin/wallets/journalentry/{entry.pk}/delete/", {"post": "yes"}),
            ("/admin/wallets/ledgeraccount/add/", {}),
        ]:
            assert client.post(path, data).status_code == 403, path


@pytest.mark.django_db
def test_a_superuser_cannot_edit_ledger_rows_either(admin_user, alice, usdt, unchanged_ledger):
    fund(alice, usdt, "10")
    client = admin_login(Client(), admin_user)
    account = LedgerAccount.objects.get(user=alice, kind=AccountKind.AVAILABLE)
    with unchanged_ledger():
        response = client.post(f"/admin/wallets/ledgeraccount/{account.pk}/change/", {"balance": "1000000"})
    assert response.status_code == 403


@pytest.mark.django_db
def test_roles_hold_the_wallet_permissions():
    def perms(role):
        group = Group.objects.get(name=role)
        return {p.codename for p in group.permissions.filter(content_type__app_label="wallets")}

    assert "post_adjustment" in perms("accountant")
    assert {"view_ledgeraccount", "view_journalentry", "view_ledgerleg"} <= perms("accountant")
    for role in ("support", "compliance", "admin"):
        assert "view_ledgeraccount" in perms(role) and "post_adjustment" not in perms(role)
    assert perms("trader") == set()
    assert not any(
        p.startswith(("change_", "delete_", "add_")) and p != "add_currency"
        for r in ("accountant", "support", "compliance", "admin")
        for p in perms(r)
    )


# --- The audit ------------------------------------------------------------------------


@pytest.fixture
def busy_ledger(alice, bob, usdt, btc):
    fund(alice, usdt, "100")
    fund(bob, btc, "1")
    services.transfer_create(
        sender=alice, recipient_email=bob.email, currency_code="USDT", amount=Decimal(40), idempotency_key="x"
    )
    services.funds_hold(user=bob, currency=btc, amount=Decimal("0.3"))


@pytest.mark.django_db
def test_the_audit_command_passes_on_a_sound_ledger_and_stores_the_run(busy_ledger, capsys):
    call_command("ledger_audit")
    assert "Ledger audit passed: 4 entries, 8 legs" in capsys.readouterr().out
    run = AuditRun.objects.get()
    assert (run.ok, run.violations, run.findings) == (True, 0, [])


def _checks(run: AuditRun) -> set[str]:
    return {f["check"] for f in run.findings}


@pytest.mark.django_db
def test_the_audit_reports_a_balance_that_is_not_the_sum_of_its_legs(busy_ledger, alice):
    LedgerAccount.objects.filter(user=alice).update(balance=Decimal(61))
    with pytest.raises(CommandError) as exc:
        call_command("ledger_audit")
    assert exc.value.returncode == 1
    run = AuditRun.objects.get()
    assert not run.ok
    assert _checks(run) == {"balance_matches_legs", "currency_sums_to_zero"}


@pytest.mark.django_db
def test_the_audit_reports_an_unbalanced_entry(busy_ledger, alice, usdt):
    account = LedgerAccount.objects.get(user=alice, currency=usdt, kind=AccountKind.AVAILABLE)
    entry = JournalEntry.objects.create(kind=EntryKind.ADJUSTMENT, reference="forged")
    LedgerLeg.objects.bulk_create(
        [LedgerLeg(entry=entry, account=account, amount=Decimal(5), balance_after=account.balance + 5)]
    )
    LedgerAccount.objects.filter(pk=account.pk).update(balance=account.balance + 5)
    run = services.ledger_audit_run()
    assert _checks(run) == {"entry_balanced", "currency_sums_to_zero"}
    assert any(f"Entry {entry.pk} does not balance in USDT" in f["message"] for f in run.findings)


@pytest.mark.django_db
def test_the_audit_reports_entries_without_legs_and_wrong_balance_after(busy_ledger, bob):
    JournalEntry.objects.create(kind=EntryKind.FEE)
    leg = LedgerLeg.objects.filter(account__user=bob).order_by("id").first()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {LedgerLeg._meta.db_table} SET balance_after = %s WHERE id = %s",
            [LedgerLeg._meta.get_field("balance_after").get_db_prep_value(Decimal(7), connection), leg.pk],
        )
    assert _checks(services.ledger_audit_run()) == {"entry_has_legs", "balance_after"}


@pytest.mark.django_db
def test_the_audit_reports_a_negative_user_balance(busy_ledger, alice, usdt):
    """The database refuses it; the audit would still catch it if constraints were off."""
    account = LedgerAccount.objects.get(user=alice, currency=usdt, kind=AccountKind.AVAILABLE)
    off, on = {
        "sqlite": ("PRAGMA ignore_check_constraints = ON", "PRAGMA ignore_check_constraints = OFF"),
        "mysql": ("SET SESSION check_constraint_checks = 0", "SET SESSION check_constraint_checks = 1"),
    }[connection.vendor]
    with connection.cursor() as cursor:
        cursor.execute(off)
        try:
            LedgerAccount.objects.filter(pk=account.pk).update(balance=Decimal(-1))
        finally:
            cursor.execute(on)
    run = services.ledger_audit_run(store=False)
    assert "user_balance_not_negative" in _checks(run)
    assert AuditRun.objects.count() == 0


@pytest.mark.django_db
def test_the_periodic_audit_task_stores_its_result(busy_ledger):
    result = ledger_audit()
    run = AuditRun.objects.get()
    assert result == {"id": run.pk, "ok": True, "violations": 0}
    entry = celery_app.conf.beat_schedule["ledger-audit"]
    assert entry["task"] == ledger_audit.name
    assert celery_app.amqp.router.route({}, ledger_audit.name)["queue"].name == "default"


# --- Demo data ------------------------------------------------------------------------


@pytest.mark.django_db
def test_demo_data_seeds_currencies_and_funds_the_traders_once():
    call_command("demo_data")
    call_command("demo_data")
    from accounts.models import User
    from wallets.models import Currency

    assert {"USDT", "ETH", "BTC", "USD"} <= set(Currency.objects.values_list("code", flat=True))
    assert Currency.objects.get(code="USD").kind == "fiat"
    alice = User.objects.get(email="alice@kootabase.local")
    usdt = Currency.objects.get(code="USDT")
    assert available(alice, usdt) == Decimal(100000)
    assert Adjustment.objects.filter(user=alice).count() == 4
    assert services.ledger_audit_run().ok


@pytest.mark.django_db
def test_the_ledger_post_helper_is_importable_for_other_apps(alice, usdt):
    """Other apps build legs with Leg and post them; a smoke test of that surface."""
    external = services.system_account(currency=usdt, kind="external")
    mine = services.ledger_accounts_ensure(keys=[(alice.pk, usdt.pk, "available")])[(alice.pk, usdt.pk, "available")]
    services.ledger_post(kind=EntryKind.DEPOSIT, legs=[Leg(external, Decimal(-3)), Leg(mine, Decimal(3))])
    assert available(alice, usdt) == Decimal(3)
