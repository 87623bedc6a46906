"""rows_update and rows_insert write exactly what the ORM would, in chunks the backend accepts."""

from decimal import Decimal

import pytest

from accounts.models import User
from kootabase.db import rows_insert, rows_update
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


@pytest.mark.django_db
def test_rows_insert_stores_what_bulk_create_stores_and_sets_primary_keys():
    from audit.models import AuditEvent

    def event(i: int) -> AuditEvent:
        return AuditEvent(action=f"test.{i}", target_type="thing", target_id=str(i), details={"n": i, "d": "0.1"})

    fast, orm = [event(i) for i in range(5)], [event(i) for i in range(5)]
    rows_insert(AuditEvent, fast)
    AuditEvent.objects.bulk_create(orm)
    fields = ("action", "target_type", "target_id", "details")
    stored = list(AuditEvent.objects.order_by("pk").values_list(*fields))
    assert stored[:5] == stored[5:]
    assert all(e.created_at is not None and not e._state.adding for e in fast)  # auto_now_add filled
    if fast[0].pk is not None:  # the backend returns inserted rows
        assert [e.pk for e in fast] == list(AuditEvent.objects.order_by("pk").values_list("pk", flat=True))[:5]


@pytest.mark.django_db
def test_rows_insert_splits_large_inserts():
    users = [User(email=f"bulk{i}@example.com", password="!") for i in range(1200)]
    rows_insert(User, users)
    assert User.objects.filter(email__startswith="bulk").count() == 1200


@pytest.mark.django_db
def test_values_that_need_escaping_are_stored_as_given():
    """On MySQL/MariaDB the values are written into the statement's text
    (kootabase.db._mysql_render): quotes, backslashes, percent signs, NUL, non-ASCII,
    booleans and NULL must come back exactly as given."""
    from audit.models import AuditEvent

    texts = ["O'Brien", 'say "hi"', "back\\slash", "100% %s %%", "nul\x00byte", "snow ☃ 😀", "", "--; DROP"]
    users = [User(email=f"esc{i}@example.com", password="!", name=text) for i, text in enumerate(texts)]
    rows_insert(User, users)
    stored = list(User.objects.filter(email__startswith="esc").order_by("email"))
    assert [u.name for u in stored] == texts
    for user in stored:
        user.name, user.is_active = user.name[::-1] + "'\\", False
    rows_update(User, stored, ["name", "is_active"])
    assert list(User.objects.filter(email__startswith="esc").order_by("email").values_list("name", "is_active")) == [
        (text[::-1] + "'\\", False) for text in texts
    ]
    event = AuditEvent(action="test.escape", target_type="", target_id="", details={"q": "'%s\\", "n": None})
    rows_insert(AuditEvent, [event])
    assert AuditEvent.objects.get(action="test.escape").details == {"q": "'%s\\", "n": None}


@pytest.mark.django_db
def test_rows_update_writes_only_what_changed_since_before():
    """``before`` holds what the rows hold: a value equal to it is left out of the
    statement (the row keeps its column), a column no row changed is not written."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    User.objects.bulk_create([User(email=f"b{i}@example.com", name=f"stored {i}") for i in range(3)])
    users = list(User.objects.filter(email__startswith="b").order_by("pk"))
    before = {user.pk: (user.name, user.phone_number) for user in users}
    users[0].name = "changed"
    users[1].name = "not written"
    before[users[1].pk] = ("not written", "")  # as if the row held it already
    with CaptureQueriesContext(connection) as queries:
        rows_update(User, users, ["name", "phone_number"], before=before)
    assert list(User.objects.filter(email__startswith="b").order_by("pk").values_list("name", flat=True)) == [
        "changed",
        "stored 1",
        "stored 2",
    ]
    [update] = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert "phone_number" not in update
