"""Staff controls of a market: halt, resume, cancel-only, cancel every open order, and who
may use them. Each takes the acting staff member and a reason, checks the permission and
writes an audit event in the transaction of the change.

- **Status.** ``market_status_set`` is the one way a market's status changes (the admin
  shows the field read-only). What the status means:

  - ``active``: orders are accepted and matched;
  - ``cancel-only``: placement is refused; the matcher performs cancels (and cancels the
    pending orders whose cancel was asked before they reached the book) but matches
    nothing: other pending orders wait;
  - ``halted``: placement is refused and the matcher does nothing for the market: the
    book, the pending orders and the cancel requests stay as they are (users may still
    ask to cancel) and are processed in order once the market is cancel-only or active.

  The matcher reads the status before each batch and checks it again, under the market
  row's lock, in the batch's transaction: a batch computed before a status change is
  rolled back, so nothing matches after a halt or cancel-only has committed. Anything
  that caches markets invalidates here, after the commit, since no status changes elsewhere.
- **Cancel all.** ``market_orders_cancel_all`` asks the matcher to cancel every live order
  of the market, as a user's cancel does (``cancel_requested``, with ``cancel_reason``
  ``market_cancel``): the matcher stays the only writer of the book, performs the cancels
  in sequence and releases the holds.
- **Who.** ``orders.operate_market`` held on the model (through a role: every market) or on
  single markets through django-guardian (a market operator's assigned markets), by an
  active staff member. ``market_operators_set`` (``orders.assign_market_operator``)
  assigns markets to the members of the ``market-operator`` role.

See docs/operations.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from guardian.shortcuts import assign_perm, get_users_with_perms, remove_perm
from guardian.utils import get_group_obj_perms_model, get_user_obj_perms_model

from accounts.models import User
from accounts.roles import MARKET_OPERATOR
from audit import actions
from audit.services import audit_record
from kootabase.errors import PermissionDenied, ServiceError
from orders.models import LIVE_STATUSES, Market, Order

OPERATE_MARKET = "orders.operate_market"
ASSIGN_MARKET_OPERATOR = "orders.assign_market_operator"
CANCEL_REASON_MARKET = "market_cancel"

_STATUS_ACTIONS = {
    Market.Status.ACTIVE: actions.MARKET_RESUMED,
    Market.Status.CANCEL_ONLY: actions.MARKET_CANCEL_ONLY,
    Market.Status.HALTED: actions.MARKET_HALTED,
}


# --- Who may ---------------------------------------------------------------------------


def market_may_operate(*, user: User, market: Market) -> bool:
    """Whether ``user`` may halt, resume, set cancel-only and cancel the orders of ``market``:
    an active staff member holding ``operate_market`` on every market or on this one."""
    if not (user.is_active and user.is_staff):
        return False
    return user.has_perm(OPERATE_MARKET) or user.has_perm(OPERATE_MARKET, market)


def markets_operated_by(*, user: User) -> QuerySet[Market]:
    """The markets ``user`` may operate (every market for a model-level holder).

    Read from guardian's permission rows directly: its ``get_objects_for_user`` compares
    ``CAST(id AS CHAR)`` with ``object_pk``, which MariaDB refuses when the two collations differ.
    """
    if not (user.is_active and user.is_staff):
        return Market.objects.none()
    if user.has_perm(OPERATE_MARKET):
        return Market.objects.all()
    content_type = ContentType.objects.get_for_model(Market)
    grants = {"content_type": content_type, "permission__codename": "operate_market"}
    own = get_user_obj_perms_model(Market).objects.filter(user=user, **grants)
    through_groups = get_group_obj_perms_model(Market).objects.filter(group__user=user, **grants)
    object_pks = [*own.values_list("object_pk", flat=True), *through_groups.values_list("object_pk", flat=True)]
    return Market.objects.filter(pk__in={int(pk) for pk in object_pks})


def market_operators(*, market: Market) -> QuerySet[User]:
    """The users assigned to ``market`` (holding ``operate_market`` on it alone)."""
    holders = get_users_with_perms(
        market, only_with_perms_in=["operate_market"], with_group_users=False, with_superusers=False
    )
    return User.objects.filter(pk__in=holders.values("pk")).order_by("email")


def market_operator_candidates() -> QuerySet[User]:
    """The active staff members of the ``market-operator`` role: whom a market may be assigned to."""
    return User.objects.filter(is_active=True, is_staff=True, groups__name=MARKET_OPERATOR).distinct().order_by("email")


def _check_may_operate(actor: User, market: Market) -> None:
    if not market_may_operate(user=actor, market=market):
        raise PermissionDenied("market_operation_forbidden", f"You may not operate {market.symbol}.")


def _reason(reason: str) -> str:
    reason = (reason or "").strip()[:200]
    if not reason:
        raise ServiceError("reason_required", "Say why: the reason goes to the audit trail.")
    return reason


# --- The controls ----------------------------------------------------------------------


def market_status_set(
    *, market: Market, status: str, actor: User, reason: str, request: HttpRequest | None = None
) -> bool:
    """Halt (``halted``), resume (``active``) or set ``cancel-only``; returns whether the
    status changed (setting the status the market has changes and records nothing).

    Raises ``status_invalid``, ``market_operation_forbidden`` (403) or ``reason_required``
    before anything is written.
    """
    if status not in Market.Status.values:
        raise ServiceError("status_invalid", f"The status is one of {', '.join(Market.Status.values)}.")
    _check_may_operate(actor, market)
    reason = _reason(reason)
    with transaction.atomic():
        locked = Market.objects.select_for_update().get(pk=market.pk)
        previous = locked.status
        if previous != status:
            locked.status = status
            locked.save(update_fields=["status", "updated_at"])
            audit_record(
                action=_STATUS_ACTIONS[status],
                actor=actor,
                target=locked,
                request=request,
                details={"reason": reason, "from": previous, "to": status},
            )
    market.status = status
    return previous != status


def market_orders_cancel_all(*, market: Market, actor: User, reason: str, request: HttpRequest | None = None) -> int:
    """Ask the matcher to cancel every live order of ``market`` (pending, untriggered, open,
    partially filled) that no one has asked to cancel yet; returns how many. The matcher
    performs them when the market is active or cancel-only (a halted market keeps them
    queued). Raises ``market_operation_forbidden`` (403) or ``reason_required``."""
    _check_may_operate(actor, market)
    reason = _reason(reason)
    with transaction.atomic():
        count = Order.objects.filter(market=market, status__in=LIVE_STATUSES, cancel_requested=False).update(
            cancel_requested=True, cancel_reason=CANCEL_REASON_MARKET, updated_at=timezone.now()
        )
        audit_record(
            action=actions.MARKET_ORDERS_CANCELLED,
            actor=actor,
            target=market,
            request=request,
            details={"reason": reason, "orders": count, "status": market.status},
        )
    return count


def market_operators_set(
    *, market: Market, operators: Iterable[User], actor: User, reason: str, request: HttpRequest | None = None
) -> tuple[list[str], list[str]]:
    """Make ``operators`` exactly the users assigned to ``market``; returns the emails added
    and removed (no change records nothing). Each new one must be an active staff member
    of the ``market-operator`` role. Raises ``market_operators_forbidden`` (403),
    ``not_a_market_operator`` or ``reason_required`` before anything is written."""
    if not (actor.is_active and actor.is_staff and actor.has_perm(ASSIGN_MARKET_OPERATOR)):
        raise PermissionDenied("market_operators_forbidden", "You may not assign markets to operators.")
    reason = _reason(reason)
    wanted = {user.pk: user for user in operators}
    current = {user.pk: user for user in market_operators(market=market)}
    added = [wanted[pk] for pk in wanted.keys() - current.keys()]
    removed = [current[pk] for pk in current.keys() - wanted.keys()]
    eligible = set(market_operator_candidates().filter(pk__in=[u.pk for u in added]).values_list("pk", flat=True))
    strangers = sorted(u.email for u in added if u.pk not in eligible)
    if strangers:
        raise ServiceError(
            "not_a_market_operator",
            f"Only active staff members of the {MARKET_OPERATOR} role operate markets: {', '.join(strangers)}.",
            details={"users": strangers},
        )
    if not added and not removed:
        return [], []
    with transaction.atomic():
        for user in added:
            assign_perm(OPERATE_MARKET, user, market)
        for user in removed:
            remove_perm(OPERATE_MARKET, user, market)
        added_emails, removed_emails = sorted(u.email for u in added), sorted(u.email for u in removed)
        audit_record(
            action=actions.MARKET_OPERATORS_CHANGED,
            actor=actor,
            target=market,
            request=request,
            details={"reason": reason, "added": added_emails, "removed": removed_emails},
        )
    return added_emails, removed_emails
