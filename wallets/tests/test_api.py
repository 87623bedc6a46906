"""The REST API: currencies, wallets, ledger history and transfers."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from wallets import services
from wallets.models import Transfer
from wallets.tests.factories import CurrencyFactory, UserFactory, fund


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.django_db
def test_currencies_are_public_and_hide_delisted_ones(api_client, usdt, btc):
    CurrencyFactory(code="OLD", is_active=False)
    response = api_client.get("/api/v1/currencies")
    assert response.status_code == 200
    body = response.json()
    assert [c["code"] for c in body] == ["BTC", "USDT"]
    assert body[1] == {
        "code": "USDT",
        "name": "Tether USD",
        "kind": "crypto",
        "precision": 6,
        "deposits_enabled": True,
        "withdrawals_enabled": True,
        "trading_enabled": True,
        "transfers_enabled": True,
    }


@pytest.mark.django_db
def test_wallets_show_available_locked_and_total_at_the_currency_precision(alice, usdt, btc):
    fund(alice, usdt, "100.5")
    services.funds_hold(user=alice, currency=usdt, amount=Decimal("0.25"))
    response = client_for(alice).get("/api/v1/wallets")
    assert response.status_code == 200
    assert response.json() == [
        {"currency": "BTC", "available": "0.00000000", "locked": "0.00000000", "total": "0.00000000"},
        {"currency": "USDT", "available": "100.250000", "locked": "0.250000", "total": "100.500000"},
    ]
    one = client_for(alice).get("/api/v1/wallets/usdt")
    assert one.status_code == 200
    assert one.json()["total"] == "100.500000"


@pytest.mark.django_db
def test_a_delisted_currency_still_shows_while_held(alice, usdt):
    fund(alice, usdt, "1")
    usdt.is_active = False
    usdt.save()
    assert [w["currency"] for w in client_for(alice).get("/api/v1/wallets").json()] == ["USDT"]


@pytest.mark.django_db
def test_wallet_of_an_unknown_currency_is_404(auth_client):
    response = auth_client.get("/api/v1/wallets/NOPE")
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_currency"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/wallets", "/api/v1/wallets/USDT", "/api/v1/ledger", "/api/v1/transfers"])
def test_wallet_endpoints_need_authentication(api_client, usdt, path):
    response = api_client.post(path, {}) if path.endswith("transfers") else api_client.get(path)
    assert response.status_code == 401


# --- Transfers ------------------------------------------------------------------------


def transfer_body(**overrides):
    return {"recipient": "bob@example.com", "currency": "USDT", "amount": "12.5", "idempotency_key": "t-1", **overrides}


@pytest.mark.django_db
def test_transfer_moves_money_and_a_retry_returns_the_first_transfer(alice, bob, usdt):
    fund(alice, usdt, "100")
    client = client_for(alice)
    first = client.post("/api/v1/transfers", transfer_body())
    assert first.status_code == 201, first.json()
    body = first.json()
    assert body["sender"] == "alice@example.com"
    assert body["recipient"] == "bob@example.com"
    assert (body["currency"], body["amount"], body["idempotency_key"]) == ("USDT", "12.500000", "t-1")
    again = client.post("/api/v1/transfers", transfer_body())
    assert again.status_code == 201
    assert again.json() == body
    assert Transfer.objects.count() == 1
    wallets = {w["currency"]: w for w in client_for(bob).get("/api/v1/wallets").json()}
    assert wallets["USDT"]["available"] == "12.500000"
    assert client.get("/api/v1/wallets/USDT").json()["available"] == "87.500000"


@pytest.mark.django_db
def test_the_same_key_for_another_transfer_is_a_conflict(alice, bob, usdt, unchanged_ledger):
    fund(alice, usdt, "100")
    client = client_for(alice)
    assert client.post("/api/v1/transfers", transfer_body()).status_code == 201
    with unchanged_ledger():
        response = client.post("/api/v1/transfers", transfer_body(amount="13"))
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_conflict"


@pytest.mark.django_db
def test_each_sender_has_their_own_keys(alice, bob, usdt):
    fund(alice, usdt, "100")
    fund(bob, usdt, "100")
    assert client_for(alice).post("/api/v1/transfers", transfer_body()).status_code == 201
    response = client_for(bob).post("/api/v1/transfers", transfer_body(recipient="alice@example.com"))
    assert response.status_code == 201
    assert Transfer.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"amount": "0"}, 400, "amount_not_positive"),
        ({"amount": "0.000000"}, 400, "amount_not_positive"),
        ({"amount": "-5"}, 400, "amount_not_positive"),
        ({"amount": "NaN"}, 400, "amount_invalid"),
        ({"amount": "Infinity"}, 400, "amount_invalid"),
        ({"amount": "1e2"}, 400, "amount_invalid"),
        ({"amount": "ten"}, 400, "amount_invalid"),
        ({"amount": " 5"}, 400, "amount_invalid"),
        ({"amount": ""}, 400, "amount_invalid"),
        ({"amount": 12.5}, 400, "amount_invalid"),
        ({"amount": True}, 400, "amount_invalid"),
        ({"amount": None}, 400, "amount_null"),
        ({"amount": "1" * 100}, 400, "amount_invalid"),
        ({"amount": "0.0000001"}, 400, "amount_precision"),  # USDT has 6 places
        ({"amount": "1.0000000000000000001"}, 400, "amount_precision"),  # beyond the column
        ({"amount": "1000000000000000000"}, 400, "amount_out_of_range"),
        ({"amount": "100.000001"}, 400, "insufficient_funds"),
        ({"currency": "XYZ"}, 400, "unknown_currency"),
        ({"currency": "OFF"}, 400, "currency_disabled"),
        ({"currency": "NOTX"}, 400, "currency_disabled"),
        ({"recipient": "alice@example.com"}, 400, "self_transfer"),
        ({"recipient": "ALICE@example.com"}, 400, "self_transfer"),
        ({"recipient": "nobody@example.com"}, 400, "unknown_recipient"),
        ({"recipient": "inactive@example.com"}, 400, "unknown_recipient"),
        ({"recipient": "not-an-email"}, 400, "recipient_invalid"),
        ({"idempotency_key": ""}, 400, "idempotency_key_blank"),
        ({"idempotency_key": "has space"}, 400, "idempotency_key_invalid"),
        ({"idempotency_key": "k" * 65}, 400, "idempotency_key_max_length"),
        ({"memo": "hi"}, 400, "unknown_field"),
    ],
)
def test_bad_transfers_are_refused_and_change_nothing(alice, bob, usdt, unchanged_ledger, overrides, status, code):
    fund(alice, usdt, "100")
    CurrencyFactory(code="OFF", is_active=False)
    CurrencyFactory(code="NOTX", transfers_enabled=False)
    UserFactory(email="inactive@example.com", is_active=False)
    transfers = Transfer.objects.count()
    with unchanged_ledger():
        response = client_for(alice).post("/api/v1/transfers", transfer_body(**overrides), format="json")
    assert (response.status_code, response.json()["code"]) == (status, code), response.json()
    assert response.json()["message"]
    assert Transfer.objects.count() == transfers


@pytest.mark.django_db
def test_missing_fields_are_named(auth_client, usdt):
    response = auth_client.post("/api/v1/transfers", {})
    assert response.status_code == 400
    assert set(response.json()["details"]) == {"recipient", "currency", "amount", "idempotency_key"}


# --- Ledger history -------------------------------------------------------------------


@pytest.fixture
def history(alice, bob, usdt, btc):
    fund(alice, usdt, "100")
    fund(alice, btc, "1")
    services.transfer_create(
        sender=alice, recipient_email=bob.email, currency_code="USDT", amount=Decimal(30), idempotency_key="a"
    )
    services.funds_hold(user=alice, currency=btc, amount=Decimal("0.5"), reference="order:9")
    fund(bob, usdt, "5")


@pytest.mark.django_db
def test_the_ledger_lists_the_users_own_lines_newest_first(alice, history):
    response = client_for(alice).get("/api/v1/ledger")
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(r["kind"], r["account"], r["currency"], r["amount"], r["balance_after"]) for r in rows] == [
        ("hold", "locked", "BTC", "0.50000000", "0.50000000"),
        ("hold", "available", "BTC", "-0.50000000", "0.50000000"),
        ("transfer", "available", "USDT", "-30.000000", "70.000000"),
        ("adjustment", "available", "BTC", "1.00000000", "1.00000000"),
        ("adjustment", "available", "USDT", "100.000000", "100.000000"),
    ]
    assert rows[0]["reference"] == "order:9"
    assert rows[2]["reference"].startswith("transfer:")
    assert rows[0]["time"].endswith("Z")


@pytest.mark.django_db
def test_the_ledger_filters_by_currency_kind_and_time(alice, history):
    client = client_for(alice)
    usdt_rows = client.get("/api/v1/ledger", {"currency": "usdt"}).json()["results"]
    assert {r["currency"] for r in usdt_rows} == {"USDT"} and len(usdt_rows) == 2
    holds = client.get("/api/v1/ledger", {"kind": "hold"}).json()["results"]
    assert {r["kind"] for r in holds} == {"hold"} and len(holds) == 2
    all_rows = client.get("/api/v1/ledger").json()["results"]
    newest = all_rows[0]["time"]
    assert client.get("/api/v1/ledger", {"since": newest}).json()["results"][0]["time"] == newest
    assert client.get("/api/v1/ledger", {"until": "2000-01-01T00:00:00Z"}).json()["results"] == []


@pytest.mark.django_db
def test_the_ledger_pages_with_a_cursor(alice, history):
    client = client_for(alice)
    first = client.get("/api/v1/ledger", {"limit": 2}).json()
    assert len(first["results"]) == 2 and first["next"]
    second = client.get(first["next"]).json()
    assert len(second["results"]) == 2
    assert not {r["id"] for r in first["results"]} & {r["id"] for r in second["results"]}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"currency": "NOPE"}, "unknown_currency"),
        ({"kind": "gift"}, "kind_invalid_choice"),
        ({"since": "yesterday"}, "since_invalid"),
        ({"since": "2030-01-01T00:00:00Z", "until": "2020-01-01T00:00:00Z"}, "time_range_invalid"),
        ({"curency": "USDT"}, "unknown_field"),
    ],
)
def test_bad_ledger_filters_are_refused(alice, history, params, code):
    response = client_for(alice).get("/api/v1/ledger", params)
    assert response.status_code == 400
    assert response.json()["code"] == code
