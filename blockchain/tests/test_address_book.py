"""The withdrawal address book: entries added with 2FA and usable only after the delay, the
"only to the address book" switch (on at once, off only after the delay), its enforcement
on withdrawals, other users' entries, API keys and the audit trail."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_otp.plugins.otp_totp.models import TOTPDevice
from eth_account import Account
from rest_framework.test import APIClient

from accounts.api_keys import api_key_create
from accounts.tests.helpers import assert_hidden_from_other_users, enable_otp, otp_code, signed
from audit.models import AuditEvent
from blockchain.hdwallet import hot_wallet
from blockchain.models import AddressBookSetting, Withdrawal, WithdrawalAddress
from blockchain.tests.conftest import world_state
from wallets.tests.factories import CurrencyFactory, UserFactory

BOOK = "/api/v1/withdrawal-addresses"
EIP55 = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55's own example
EIP55_TYPO = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"
SETTING = "/api/v1/withdrawal-addresses/setting"
DAY = timedelta(hours=24)


def book_state() -> tuple:
    """Everything a refused address book request must leave as it was."""
    return (
        list(WithdrawalAddress.objects.order_by("pk").values_list("pk", "user_id", "address", "active_at")),
        list(AddressBookSetting.objects.order_by("pk").values_list("pk", "only_address_book", "off_at")),
        AuditEvent.objects.exclude(action="2fa.failed").count(),
    )


def add(client, user, address, *, network="ethereum", currency=None, label="cold wallet", code=None):
    body = {
        "network": network,
        "address": address,
        "label": label,
        "otp_code": otp_code(user) if code is None else code,
    }
    if currency is not None:
        body["currency"] = currency
    return client.post(BOOK, body)


def set_only_book(client, user, on: bool, code=None):
    return client.put(SETTING, {"only_address_book": on, "otp_code": otp_code(user) if code is None else code})


def withdraw(client, user, address, *, currency="ETH", amount="1", key="w-1"):
    body = {
        "currency": currency,
        "network": "ethereum",
        "address": address,
        "amount": amount,
        "idempotency_key": key,
        "otp_code": otp_code(user),
    }
    return client.post("/api/v1/withdrawals", body)


def forget_wrong_codes(user) -> None:
    """End the device's back-off after a wrong code (django-otp makes the next try wait)."""
    TOTPDevice.objects.filter(user=user).update(throttling_failure_count=0, throttling_failure_timestamp=None)


def iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def activate(entry_id: int) -> None:
    """As after the activation delay: the entry's ``active_at`` lies in the past."""
    WithdrawalAddress.objects.filter(pk=entry_id).update(active_at=timezone.now() - timedelta(seconds=1))


def let_switch_off_take_effect(user) -> None:
    """As after the activation delay: the pending switch-off's time lies in the past."""
    AddressBookSetting.objects.filter(user=user).update(off_at=timezone.now() - timedelta(seconds=1))


# --- Entries --------------------------------------------------------------------------


def test_an_address_is_added_with_2fa_checksummed_and_active_only_after_the_delay(alice_client, rich_alice):
    address = Account.create().address
    response = add(alice_client, rich_alice, address.lower(), label="  my ledger  ")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["address"] == address  # stored in its EIP-55 form
    assert (body["network"], body["currency"], body["label"], body["active"]) == ("ethereum", None, "my ledger", False)
    entry = WithdrawalAddress.objects.get(pk=body["id"])
    assert entry.user == rich_alice
    assert entry.active_at - entry.created_at == DAY
    assert parse_datetime(body["active_at"]) == entry.active_at
    event = AuditEvent.objects.get(action="address_book.added")
    assert (event.actor, event.target_id) == (rich_alice, str(entry.pk))
    assert event.details == {
        "network": "ethereum",
        "currency": "",
        "address": address,
        "label": "my ledger",
        "active_at": iso(entry.active_at),
    }
    listed = alice_client.get(BOOK).json()["results"]
    assert [(e["id"], e["active"]) for e in listed] == [(entry.pk, False)]
    activate(entry.pk)
    assert alice_client.get(f"{BOOK}/{entry.pk}").json()["active"] is True


def test_the_delay_is_a_setting(alice_client, rich_alice, settings):
    settings.ADDRESS_BOOK_ACTIVATION_DELAY = 3600
    entry = WithdrawalAddress.objects.get(pk=add(alice_client, rich_alice, Account.create().address).json()["id"])
    assert entry.active_at - entry.created_at == timedelta(hours=1)
    settings.ADDRESS_BOOK_ACTIVATION_DELAY = 0
    body = add(alice_client, rich_alice, Account.create().address).json()
    assert body["active"] is True


@pytest.mark.parametrize(
    ("code", "expected"),
    [("", (403, "otp_required")), ("000000", (403, "otp_invalid"))],
)
def test_adding_needs_a_valid_2fa_code(alice_client, rich_alice, code, expected):
    before = book_state()
    response = add(alice_client, rich_alice, Account.create().address, code=code)
    assert (response.status_code, response.json()["code"]) == expected
    assert book_state() == before


def test_adding_needs_2fa_turned_on(alice_client, alice, network):
    before = book_state()
    response = add(alice_client, alice, Account.create().address, code="123456")
    assert (response.status_code, response.json()["code"]) == (403, "otp_required")
    assert book_state() == before


def test_the_address_gets_the_checks_withdrawals_make(alice_client, rich_alice, usdt_asset):
    good = EIP55
    CurrencyFactory(code="BTC")
    cases = [
        ({"address": "0x1234"}, (400, "address_invalid")),
        ({"address": EIP55_TYPO}, (400, "address_checksum")),
        ({"address": usdt_asset.contract_address}, (400, "address_is_contract")),
        ({"address": hot_wallet().address}, (400, "address_is_internal")),
        ({"address": good, "network": "nowhere"}, (400, "network_unsupported")),
        ({"address": good, "currency": "NOPE"}, (400, "unknown_currency")),
        ({"address": good, "currency": "BTC"}, (400, "network_unsupported")),  # listed, not on this network
        ({"address": good, "shoe_size": 42}, (400, "unknown_field")),
    ]
    before = book_state()
    for changes, expected in cases:
        body = {"network": "ethereum", "address": good, "otp_code": otp_code(rich_alice), **changes}
        response = alice_client.post(BOOK, body)
        assert (response.status_code, response.json()["code"]) == expected, (changes, response.json())
    assert book_state() == before


def test_an_address_is_in_the_book_once_per_network(alice_client, rich_alice):
    address = Account.create().address
    assert add(alice_client, rich_alice, address).status_code == 201
    before = book_state()
    response = add(alice_client, rich_alice, address.lower(), currency="USDT")
    assert (response.status_code, response.json()["code"]) == (409, "address_book_duplicate")
    assert book_state() == before


def test_removing_needs_no_2fa_and_is_audited(alice_client, rich_alice):
    address = Account.create().address
    entry_id = add(alice_client, rich_alice, address, currency="USDT").json()["id"]
    assert alice_client.delete(f"{BOOK}/{entry_id}").status_code == 204
    assert not WithdrawalAddress.objects.filter(pk=entry_id).exists()
    event = AuditEvent.objects.get(action="address_book.removed")
    assert (event.actor, event.target_id) == (rich_alice, str(entry_id))
    assert event.details == {"network": "ethereum", "currency": "USDT", "address": address, "label": "cold wallet"}
    assert alice_client.delete(f"{BOOK}/{entry_id}").status_code == 404


def test_other_users_entries_are_404_and_untouched(alice_client, rich_alice, network):
    entry_id = add(alice_client, rich_alice, Account.create().address).json()["id"]
    bob = UserFactory(email="bob@example.com")
    enable_otp(bob)
    bob_client = APIClient()
    bob_client.force_authenticate(bob)
    bobs_id = add(bob_client, bob, Account.create().address).json()["id"]
    assert_hidden_from_other_users(
        bob_client,
        [
            ("GET", f"{BOOK}/{entry_id}", None),
            ("DELETE", f"{BOOK}/{entry_id}", None),
            ("GET", f"{BOOK}/999999", None),
            ("DELETE", f"{BOOK}/999999", None),
        ],
        snapshot=book_state,
    )
    assert [e["id"] for e in bob_client.get(BOOK).json()["results"]] == [bobs_id]
    assert [e["id"] for e in alice_client.get(BOOK).json()["results"]] == [entry_id]


def test_api_keys_read_the_book_but_never_change_it(rich_alice, network):
    created = api_key_create(user=rich_alice, label="bot", scopes=["read", "withdraw"], otp_code=otp_code(rich_alice))
    key, secret = created.api_key.key, created.secret
    before = book_state()
    body = {"network": "ethereum", "address": Account.create().address, "otp_code": otp_code(rich_alice)}
    for method, path, payload in (
        ("POST", BOOK, body),
        ("PUT", SETTING, {"only_address_book": False, "otp_code": otp_code(rich_alice)}),
        ("DELETE", f"{BOOK}/1", None),
    ):
        response = signed(APIClient(), method, path, key=key, secret=secret, body=payload)
        assert (response.status_code, response.json()["code"]) == (403, "api_key_not_allowed"), method
    assert book_state() == before
    listed = signed(APIClient(), "GET", BOOK, key=key, secret=secret)
    assert (listed.status_code, listed.json()["results"]) == (200, [])
    assert signed(APIClient(), "GET", SETTING, key=key, secret=secret).json()["only_address_book"] is False


# --- The switch -----------------------------------------------------------------------


def test_the_switch_goes_on_at_once_with_2fa(alice_client, rich_alice):
    assert alice_client.get(SETTING).json() == {"only_address_book": False, "switch_off_at": None}
    before = book_state()
    for code, expected in (("", "otp_required"), ("000000", "otp_invalid")):
        response = set_only_book(alice_client, rich_alice, True, code=code)
        assert (response.status_code, response.json()["code"]) == (403, expected)
    assert book_state() == before
    forget_wrong_codes(rich_alice)
    response = set_only_book(alice_client, rich_alice, True)
    assert response.status_code == 200, response.json()
    assert response.json() == {"only_address_book": True, "switch_off_at": None}
    assert alice_client.get(SETTING).json() == {"only_address_book": True, "switch_off_at": None}
    event = AuditEvent.objects.get(action="address_book.setting_changed")
    assert (event.actor, event.details) == (rich_alice, {"only_address_book": True})
    set_only_book(alice_client, rich_alice, True)  # already on: nothing to record
    assert AuditEvent.objects.filter(action="address_book.setting_changed").count() == 1


def test_the_switch_goes_off_only_after_the_delay(alice_client, rich_alice):
    set_only_book(alice_client, rich_alice, True)
    before = book_state()
    response = set_only_book(alice_client, rich_alice, False, code="")
    assert (response.status_code, response.json()["code"]) == (403, "otp_required")
    assert book_state() == before

    asked_from = timezone.now()
    response = set_only_book(alice_client, rich_alice, False)
    asked_until = timezone.now()
    assert response.status_code == 200, response.json()
    setting = AddressBookSetting.objects.get(user=rich_alice)
    assert setting.only_address_book is True
    assert asked_from + DAY <= setting.off_at <= asked_until + DAY
    assert response.json() == {"only_address_book": True, "switch_off_at": iso(setting.off_at)}
    event = AuditEvent.objects.filter(action="address_book.setting_changed").latest("id")
    assert event.details == {"only_address_book": False, "effective_at": iso(setting.off_at)}

    pending = set_only_book(alice_client, rich_alice, False).json()  # asked again: the same pending switch-off
    assert pending["switch_off_at"] == iso(setting.off_at)
    assert AuditEvent.objects.filter(action="address_book.setting_changed").count() == 2

    let_switch_off_take_effect(rich_alice)
    assert alice_client.get(SETTING).json() == {"only_address_book": False, "switch_off_at": None}


def test_turning_it_on_again_cancels_a_pending_switch_off(alice_client, rich_alice):
    set_only_book(alice_client, rich_alice, True)
    set_only_book(alice_client, rich_alice, False)
    response = set_only_book(alice_client, rich_alice, True)
    assert response.json() == {"only_address_book": True, "switch_off_at": None}
    event = AuditEvent.objects.filter(action="address_book.setting_changed").latest("id")
    assert event.details == {"only_address_book": True, "switch_off_cancelled": True}
    assert AddressBookSetting.objects.get(user=rich_alice).off_at is None  # nothing pending


def test_the_delay_setting_applies_to_the_switch_off(alice_client, rich_alice, settings):
    settings.ADDRESS_BOOK_ACTIVATION_DELAY = 0
    set_only_book(alice_client, rich_alice, True)
    assert set_only_book(alice_client, rich_alice, False).json() == {"only_address_book": False, "switch_off_at": None}


# --- Enforcement on withdrawals -------------------------------------------------------


def _refused(client, user, address, code, unchanged, **kwargs):
    with unchanged():
        response = withdraw(client, user, address, **kwargs)
    assert (response.status_code, response.json()["code"]) == (403, code), response.json()
    return response.json()


def test_with_the_switch_on_only_active_entries_receive_withdrawals(alice_client, rich_alice, unchanged):
    set_only_book(alice_client, rich_alice, True)
    stranger = Account.create().address
    error = _refused(alice_client, rich_alice, stranger, "address_not_in_book", unchanged)
    assert error["details"] == {"network": "ethereum", "address": stranger}

    entry = add(alice_client, rich_alice, Account.create().address).json()
    error = _refused(alice_client, rich_alice, entry["address"].lower(), "address_not_yet_active", unchanged)
    assert error["details"]["active_at"] == entry["active_at"]

    activate(entry["id"])
    response = withdraw(alice_client, rich_alice, entry["address"].lower(), amount="1.5")
    assert response.status_code == 201, response.json()
    assert response.json()["address"] == entry["address"]
    _refused(alice_client, rich_alice, stranger, "address_not_in_book", unchanged, key="w-2")


def test_a_currency_restricted_entry_takes_only_that_currency(alice_client, rich_alice, unchanged):
    set_only_book(alice_client, rich_alice, True)
    entry = add(alice_client, rich_alice, Account.create().address, currency="USDT").json()
    activate(entry["id"])
    error = _refused(alice_client, rich_alice, entry["address"], "address_not_in_book", unchanged)
    assert error["details"]["currency"] == "USDT"
    response = withdraw(alice_client, rich_alice, entry["address"], currency="USDT", amount="100")
    assert response.status_code == 201, response.json()


def test_an_entry_of_another_user_does_not_count(alice_client, rich_alice, unchanged):
    bob = UserFactory(email="bob@example.com")
    enable_otp(bob)
    bob_client = APIClient()
    bob_client.force_authenticate(bob)
    bobs = add(bob_client, bob, Account.create().address).json()
    activate(bobs["id"])
    set_only_book(alice_client, rich_alice, True)
    _refused(alice_client, rich_alice, bobs["address"], "address_not_in_book", unchanged)


def test_a_pending_switch_off_still_enforces_the_book_until_it_takes_effect(alice_client, rich_alice, unchanged):
    set_only_book(alice_client, rich_alice, True)
    set_only_book(alice_client, rich_alice, False)
    stranger = Account.create().address
    _refused(alice_client, rich_alice, stranger, "address_not_in_book", unchanged)
    let_switch_off_take_effect(rich_alice)
    response = withdraw(alice_client, rich_alice, stranger)
    assert response.status_code == 201, response.json()


def test_with_the_switch_off_the_book_does_not_restrict(alice_client, rich_alice):
    add(alice_client, rich_alice, Account.create().address)  # not active yet, and beside the point
    response = withdraw(alice_client, rich_alice, Account.create().address)
    assert response.status_code == 201, response.json()
    assert Withdrawal.objects.count() == 1


def test_a_refused_withdrawal_leaves_the_world_as_it_was(alice_client, rich_alice):
    """The refusal comes before anything is held: balances, entries, withdrawals unchanged."""
    set_only_book(alice_client, rich_alice, True)
    before = (world_state(), book_state())
    response = withdraw(alice_client, rich_alice, Account.create().address, amount="5")
    assert response.status_code == 403
    assert (world_state(), book_state()) == before
