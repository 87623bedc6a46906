"""A frozen account logs in and looks, but moves nothing; unfreezing gives it back."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group

from accounts.roles import COMPLIANCE
from accounts.services import user_freeze, user_unfreeze
from audit import actions
from audit.models import AuditEvent
from kootabase.errors import PermissionDenied, ServiceError
from orders import demo as orders_demo
from orders.models import Order
from orders.services import order_place
from orders.swap import swap_execute, swap_quote_create
from wallets.models import Currency, JournalEntry
from wallets.services import transfer_create
from wallets.tests.factories import UserFactory, fund


@pytest.fixture
def staff(db):
    """A compliance officer: the role that freezes accounts (``accounts.freeze_user``)."""
    user = UserFactory(email="staff@example.com", is_staff=True)
    user.groups.add(Group.objects.get(name=COMPLIANCE))
    return user


@pytest.fixture
def alice(db):
    orders_demo.seed()
    user = UserFactory(email="alice@example.com")
    fund(user, Currency.objects.get(code="USDT"), "1000")
    return user


@pytest.fixture
def bob(db):
    return UserFactory(email="bob@example.com")


def _place(user):
    return order_place(
        user=user, market_symbol="ETH-USDT", side="buy", type="limit", quantity=Decimal("1"), price=Decimal("100")
    )


def _transfer(user, key="t1"):
    return transfer_create(
        sender=user, recipient_email="bob@example.com", currency_code="USDT", amount=Decimal("5"), idempotency_key=key
    )


def test_a_frozen_account_cannot_place_orders_transfer_or_swap_and_nothing_moves(alice, bob, staff):
    user_freeze(user=alice, actor=staff, reason="suspicious deposits")
    entries, orders = JournalEntry.objects.count(), Order.objects.count()

    for action in (lambda: _place(alice), lambda: _transfer(alice)):
        with pytest.raises(PermissionDenied) as refused:
            action()
        assert refused.value.code == "account_frozen"
        assert refused.value.status == 403
    with pytest.raises(PermissionDenied):
        swap_execute(user=alice, quote_id="00000000-0000-0000-0000-000000000000", slippage=Decimal("0.01"))

    assert (JournalEntry.objects.count(), Order.objects.count()) == (entries, orders)
    alice.refresh_from_db()
    assert alice.is_frozen and alice.frozen_reason == "suspicious deposits"


def test_unfreezing_gives_the_account_back(alice, bob, staff):
    user_freeze(user=alice, actor=staff, reason="check")
    user_unfreeze(user=alice, actor=staff, reason="cleared")
    alice.refresh_from_db()
    assert not alice.is_frozen
    assert _place(alice).status == "pending"
    assert _transfer(alice).amount == Decimal("5")


def test_freeze_and_unfreeze_are_audited_once_each(alice, staff):
    user_freeze(user=alice, actor=staff, reason="one")
    user_freeze(user=alice, actor=staff, reason="again")  # already frozen: nothing more
    user_unfreeze(user=alice, actor=staff, reason="done")
    user_unfreeze(user=alice, actor=staff, reason="done again")
    events = list(
        AuditEvent.objects.filter(target_id=str(alice.pk), action__startswith="accounts.")
        .order_by("id")
        .values_list("action", "details")
    )
    assert [action for action, _ in events] == [actions.USER_FROZEN, actions.USER_UNFROZEN]
    assert events[0][1]["reason"] == "one"
    assert events[1][1]["frozen_for"] == "one"


def test_a_freeze_needs_a_reason(alice, staff):
    with pytest.raises(ServiceError) as refused:
        user_freeze(user=alice, actor=staff, reason="  ")
    assert refused.value.code == "reason_required"
    alice.refresh_from_db()
    assert not alice.is_frozen


def test_a_frozen_user_can_still_quote_but_not_execute(alice, staff):
    user_freeze(user=alice, actor=staff, reason="x")
    try:
        swap_quote_create(user=alice, from_code="USDT", to_code="ETH", amount=Decimal("10"))
    except ServiceError as exc:  # an empty book has no liquidity; quoting is read-only either way
        assert exc.code != "account_frozen"
