"""The withdrawal address book: its writes and the check withdrawals make against it.

Rules (docs/security.md):

- An entry is added with a 2FA code and becomes usable ``ADDRESS_BOOK_ACTIVATION_DELAY``
  seconds later (default 24 hours). Its address passes the same checks as a withdrawal's
  (``withdrawal_address_check``) and is stored in canonical form. Removing an entry needs
  no 2FA: it only ever narrows where money can go.
- "Withdrawals only to the address book" is turned on with a 2FA code and holds at once.
  Turning it off needs a 2FA code too and takes effect only after the same delay; until
  then it stays on, and turning it on again cancels the switch-off. So whoever steals a
  session, or even a 2FA code, can neither add an address nor lift the restriction and
  withdraw before the owner has had the delay to notice (both are in the audit trail).
- While it is on, ``withdrawal_request`` refuses addresses that are not an active entry
  of the user on that network (``address_not_in_book``, ``address_not_yet_active``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import User
from accounts.otp import otp_verify
from audit import actions
from audit.services import audit_record
from blockchain.models import AddressBookSetting, Asset, WithdrawalAddress
from blockchain.selectors import AddressBookState, address_book_state_of
from blockchain.services import network_get, withdrawal_address_check
from kootabase.errors import Conflict, NotFound, PermissionDenied, ServiceError
from wallets.models import Currency
from wallets.services import currency_get_enabled

MAX_ENTRIES = 200


def activation_delay() -> timedelta:
    return timedelta(seconds=settings.ADDRESS_BOOK_ACTIVATION_DELAY)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")  # as the API writes times


def _entry_details(entry: WithdrawalAddress) -> dict[str, str]:
    return {
        "network": entry.network.name,
        "currency": entry.currency.code if entry.currency_id else "",
        "address": entry.address,
        "label": entry.label,
    }


def address_book_add(
    *,
    user: User,
    network_name: str,
    address: str,
    currency_code: str | None = None,
    label: str = "",
    otp_code: str | None,
    request: HttpRequest | None = None,
) -> WithdrawalAddress:
    """Add ``address`` on ``network_name`` (for ``currency_code`` only, when given) to the
    user's address book after a 2FA check; usable from ``active_at`` on.

    Errors (nothing is stored): ``network_unsupported``, ``unknown_currency``,
    ``currency_disabled``, ``address_invalid``, ``address_checksum``, ``address_is_internal``,
    ``address_is_contract``, ``address_book_duplicate`` (409), ``address_book_full``,
    ``otp_required``/``otp_invalid`` (403), ``otp_throttled`` (429).
    """
    network = network_get(name=network_name)
    currency: Currency | None = None
    if currency_code:
        currency = currency_get_enabled(code=currency_code)
        if not Asset.objects.filter(network=network, currency=currency).exists():
            raise ServiceError(
                "network_unsupported",
                f"{currency.code} is not supported on {network.name}.",
                details={"currency": currency.code, "network": network.name},
            )
    address = withdrawal_address_check(network=network, address=address)
    label = label.strip()
    duplicate = Conflict(
        "address_book_duplicate",
        "This address is already in your address book for this network.",
        details={"network": network.name, "address": address},
    )
    if WithdrawalAddress.objects.filter(user=user, network=network, address=address).exists():
        raise duplicate  # before the 2FA check, so the code is not spent on a refused request
    otp_verify(user=user, code=otp_code, request=request, purpose="address_book_add")
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()  # serialise the count below per user
        if WithdrawalAddress.objects.filter(user=user).count() >= MAX_ENTRIES:
            raise ServiceError("address_book_full", f"At most {MAX_ENTRIES} addresses; remove one first.")
        now = timezone.now()
        try:
            with transaction.atomic():
                entry = WithdrawalAddress.objects.create(
                    user=user,
                    network=network,
                    currency=currency,
                    address=address,
                    label=label,
                    created_at=now,
                    active_at=now + activation_delay(),
                )
        except IntegrityError:
            raise duplicate from None
        audit_record(
            action=actions.ADDRESS_BOOK_ADDED,
            actor=user,
            target=entry,
            request=request,
            details={**_entry_details(entry), "active_at": _iso(entry.active_at)},
        )
    return entry


def address_book_remove(*, user: User, entry_id: int, request: HttpRequest | None = None) -> None:
    """Remove one of the user's entries (no 2FA: it narrows where money can go). Another
    user's entry id is ``not_found`` and left alone."""
    with transaction.atomic():
        entry = (
            WithdrawalAddress.objects.select_for_update()
            .select_related("network", "currency")
            .filter(pk=entry_id, user=user)
            .first()
        )
        if entry is None:
            raise NotFound("not_found", "No such address book entry.")
        audit_record(
            action=actions.ADDRESS_BOOK_REMOVED,
            actor=user,
            target=entry,
            request=request,
            details=_entry_details(entry),
        )
        entry.delete()


def address_book_setting_set(
    *, user: User, only_address_book: bool, otp_code: str | None, request: HttpRequest | None = None
) -> AddressBookState:
    """Turn "withdrawals only to the address book" on (at once) or off (after the
    activation delay); both need a 2FA code. Asking for the state already in force, or for
    a switch-off already pending, changes nothing."""
    otp_verify(user=user, code=otp_code, request=request, purpose="address_book_setting")
    with transaction.atomic():
        AddressBookSetting.objects.get_or_create(user=user)
        setting = AddressBookSetting.objects.select_for_update().get(user=user)
        now = timezone.now()
        was_on = setting.is_on(now)
        if only_address_book:
            if setting.only_address_book and setting.off_at is None:
                return address_book_state_of(setting, now)
            details: dict[str, object] = {"only_address_book": True}
            if was_on:
                details["switch_off_cancelled"] = True
            setting.only_address_book, setting.off_at = True, None
        else:
            if was_on and setting.off_at is not None:
                return address_book_state_of(setting, now)  # the switch-off is already on its way
            if not was_on:
                if setting.only_address_book:  # an earlier switch-off took effect: record it as done
                    setting.only_address_book, setting.off_at = False, None
                    setting.save(update_fields=["only_address_book", "off_at", "updated_at"])
                return address_book_state_of(setting, now)
            setting.off_at = now + activation_delay()
            details = {"only_address_book": False, "effective_at": _iso(setting.off_at)}
        setting.save(update_fields=["only_address_book", "off_at", "updated_at"])
        audit_record(
            action=actions.ADDRESS_BOOK_SETTING_CHANGED, actor=user, target=user, request=request, details=details
        )
        return address_book_state_of(setting, now)


def address_book_check(*, user: User, asset: Asset, address: str) -> None:
    """Refuse a withdrawal of ``asset`` to ``address`` (canonical form) when the user's
    withdrawals go only to the address book and it is not an active entry for them:
    ``address_not_in_book`` or ``address_not_yet_active`` (403). Changes nothing."""
    now = timezone.now()
    setting = AddressBookSetting.objects.filter(user=user).first()
    if setting is None or not setting.is_on(now):
        return
    entry = (
        WithdrawalAddress.objects.select_related("currency")
        .filter(user=user, network_id=asset.network_id, address=address)
        .first()
    )
    details = {"network": asset.network.name, "address": address}
    if entry is None:
        raise PermissionDenied(
            "address_not_in_book",
            "Your withdrawals go only to addresses in your address book, and this one is not in it.",
            details=details,
        )
    if entry.currency_id is not None and entry.currency_id != asset.currency_id:
        raise PermissionDenied(
            "address_not_in_book",
            f"This address is in your address book for {entry.currency.code} only.",
            details={**details, "currency": entry.currency.code},
        )
    if not entry.is_active(now):
        raise PermissionDenied(
            "address_not_yet_active",
            f"This address becomes usable at {_iso(entry.active_at)}.",
            details={**details, "active_at": _iso(entry.active_at)},
        )
