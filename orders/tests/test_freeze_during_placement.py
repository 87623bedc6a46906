"""A freeze and a placement of the same user's order, at the same time: the order is
either refused or cancelled by the freeze, never left live on a frozen account."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import user_freeze
from orders.models import Order
from orders.services import orders_place_many
from orders.tests.conftest import balance, world_state
from orders.tests.test_group_placement import _request
from wallets.models import AccountKind


@pytest.mark.django_db
def test_a_freeze_committed_after_the_user_was_read_refuses_the_order(alice, bob, usdt):
    """The request's user was read (authenticated) before the freeze committed."""
    User.objects.filter(pk=alice.pk).update(frozen_at=timezone.now())  # alice's object is stale
    before = balance(alice, usdt, AccountKind.AVAILABLE)
    outcomes = orders_place_many(requests=[_request(alice, "1", "a-1"), _request(bob, "1", "b-1")])
    assert outcomes[0].code == "account_frozen" and outcomes[0].status == 403
    assert outcomes[1].created  # another user's order in the same group is placed
    assert not Order.objects.filter(user=alice).exists()
    assert balance(alice, usdt, AccountKind.AVAILABLE) == before
    assert balance(alice, usdt, AccountKind.LOCKED) == 0


@pytest.mark.django_db
def test_a_frozen_users_refusal_changes_nothing(alice, usdt):
    User.objects.filter(pk=alice.pk).update(frozen_at=timezone.now())
    before = world_state()
    assert orders_place_many(requests=[_request(alice, "1", "a-1")])[0].code == "account_frozen"
    assert world_state() == before


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_a_freeze_during_a_placement_waits_and_cancels_the_order(alice, usdt):
    """The freeze starts while the placement's transaction is open: it waits for it and
    then asks the matcher to cancel the order (cancel_orders), instead of missing it."""
    placed = threading.Event()
    order_ids: list[int] = []

    def place() -> None:
        try:
            with transaction.atomic():
                outcome = orders_place_many(requests=[_request(alice, "1", "during")])[0]
                order_ids.append(outcome.order.pk)
                placed.set()
                froze.wait(1.0)  # the freeze is waiting for this transaction now (or soon)
        finally:
            connection.close()

    froze = threading.Event()
    placing = threading.Thread(target=place)
    placing.start()
    assert placed.wait(10)
    freezing_done = threading.Event()

    def freeze() -> None:
        try:
            user_freeze(user=User.objects.get(pk=alice.pk), actor=None, reason="test", cancel_orders=True)
            freezing_done.set()
        finally:
            connection.close()

    freezing = threading.Thread(target=freeze)
    freezing.start()
    assert not freezing_done.wait(0.5)  # blocked on the user's row, held by the placement
    froze.set()
    placing.join(10)
    freezing.join(10)
    assert freezing_done.is_set()
    order = Order.objects.get(pk=order_ids[0])
    assert (order.cancel_requested, order.cancel_reason) == (True, "account_frozen")
