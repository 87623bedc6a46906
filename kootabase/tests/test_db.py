"""rows_update writes exactly what the ORM would, in chunks the backend accepts."""

from decimal import Decimal

import pytest

from accounts.models import User
from kootabase.db import rows_update
from orders.models import Market


@pytest.mark.django_db
def test_rows_update_writes_exact_decimals_and_text():
    from orders import demo

    demo.seed()
    rows = list(Market.objects.order_by("pk"))
    rows[0].tick_size, rows[1].tick_size = Decimal("0.000000000000000001"), Decimal("123456789.5")
    rows[0].status, rows[1].status = Market.Status.HALTED, Market.Status.CANCEL_ONLY
    rows_update(Market, rows, ["tick_size", "status"])
    fresh = list(Market.objects.order_by("pk").values_list("tick_size", "status"))
    assert fresh == [(Decimal("0.000000000000000001"), "halted"), (Decimal("123456789.5"), "cancel-only")]


@pytest.mark.django_db
def test_rows_update_splits_large_updates():
    users = [User(email=f"u{i}@example.com") for i in range(1200)]
    User.objects.bulk_create(users)
    users = list(User.objects.order_by("pk"))
    for i, user in enumerate(users):
        user.name, user.phone_number = f"name {i}", "" if i % 2 else "+14155550123"
    rows_update(User, users, ["name", "phone_number"])
    assert list(User.objects.order_by("pk").values_list("name", flat=True)) == [f"name {i}" for i in range(1200)]
    assert User.objects.filter(phone_number="+14155550123").count() == 600
