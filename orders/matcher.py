"""The single writer of a market: it feeds accepted orders and cancels to the engine in
sequence and commits what happened (trades, order updates, ledger postings, released
holds, its counters) in one transaction per batch.

- **One writer.** ``MarketLock`` is held for the matcher's lifetime: on MySQL/MariaDB
  a named lock (``GET_LOCK``) on a connection of its own, which the server drops when
  the process dies; on SQLite an exclusive ``flock`` on ``var/matcher-<symbol>.lock``,
  which the kernel drops. Behind the lock, fencing: at start the matcher increments
  ``MatcherState.epoch``, and every batch commits only through
  ``UPDATE ... WHERE epoch = <mine>``; 0 rows means another writer has started since,
  and the batch rolls back (``FencingError``).
- **The database is the queue.** New orders are ``pending`` rows and cancels are
  ``cancel_requested`` flags; the matcher polls for them (every 50 ms when idle). A row
  stops being work in the same commit that records its outcome, so a crash at any
  instant loses nothing and does nothing twice: the next start rebuilds the book from
  the committed rows and carries on.
- **Rebuild.** The book is restored with the engine's ``BookState``: resting orders
  with their remaining quantity in ``book_priority`` order, held stops in ``seq``
  order, the last trade price and the last seq. The same happens after any failed batch.
  An order no longer on the market's tick or lot is left out, and the next batch
  cancels it (``invalid``), releasing its hold.
- **The market's status** (``orders.controls``) is read before each batch: ``halted``,
  nothing is done; ``cancel-only``, only cancels; ``active``, everything. Each batch
  checks it again under the market row's lock in its transaction and is rolled back
  (``MarketStatusChanged``) if it changed meanwhile.

See docs/orders.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import hashlib
import logging
import operator
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.utils import timezone

from kootabase.db import (
    exists_using_index,
    model_build,
    row_update_where,
    rows_insert,
    rows_update,
    writes_deferred,
    writes_streamed,
)
from kootabase.errors import ServiceError
from kootabase.events import broadcasts_after_commit, broadcasts_flush
from kootabase.statements import Many, Statement
from matching.engine import (
    BUY,
    FOK,
    GTC,
    IOC,
    SELL,
    TRIGGER_ABOVE,
    TRIGGER_BELOW,
    BookState,
    Cancel,
    CodecError,
    EventKind,
    OrderBook,
    PlaceLimit,
    PlaceMarket,
    PlaceStop,
    Reason,
    RestingOrder,
    StopOrder,
)
from orders.models import (
    Market,
    MatcherState,
    Order,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    Trade,
)
from orders.pricing import FeeRates, fee_due, market_spec, quote_budget_units, to_lots, to_ticks
from orders.services import market_group, user_group
from wallets.models import MONEY, AccountKind, EntryKind, LedgerAccount
from wallets.services import AccountKey, Leg, Posting, ledger_accounts_ensure, ledger_post_batch

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from marketdata.services import MarketDataWriter

logger = logging.getLogger(__name__)

BATCH_SIZE = 2000  # a backlog spreads the per-batch statements and the commit over many orders
#: Batches of a backlog worked out while the one before is written (see ``_commit_ahead``),
#: before the queues are read afresh and the other markets of the process get their turn.
AHEAD_BATCHES = 4
IDLE_SLEEP = 0.05
HEARTBEAT_EVERY = 5.0

_SIDE_TO_ENGINE = {Side.BUY: BUY, Side.SELL: SELL}
_SIDE_FROM_ENGINE = {BUY: Side.BUY, SELL: Side.SELL}
_TIF_TO_ENGINE = {TimeInForce.GTC: GTC, TimeInForce.IOC: IOC, TimeInForce.FOK: FOK}
_RESTING = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
_CANCELLABLE = (OrderStatus.UNTRIGGERED, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
# The indexes the matcher's queues are read through (orders.models.Order.Meta.indexes).
_PENDING_INDEX = "orders_market_status_id"
_CANCELS_INDEX = "orders_market_cancel_status"
#: The columns of an order a batch writes; the matcher is their only writer.
_WRITTEN = (
    "status",
    "reject_reason",
    "filled_quantity",
    "filled_quote",
    "taker_quote",
    "fee_paid",
    "hold_left",
    "seq",
    "cancel_seq",
    "book_priority",
    "updated_at",
)
_written = operator.attrgetter(*_WRITTEN)


class MatcherLockError(RuntimeError):
    """Another matcher holds this market."""


class FencingError(RuntimeError):
    """Another matcher started for this market since this one did: this one must stop."""

    def __init__(self, message: str, *, symbol: str = "") -> None:
        super().__init__(message)
        self.symbol = symbol


class LockLost(FencingError):
    """The market's lock was lost (its connection closed) and another matcher holds it now."""


class MarketStatusChanged(RuntimeError):
    """The market's status changed after the batch was worked out: it is rolled back."""


# --- The lock -------------------------------------------------------------------------


class MarketLock:
    """Exclusive ownership of one market by one process (see the module docstring)."""

    #: The lock's connection runs a statement only at ``verify()``: the server must not close
    #: it as idle (``wait_timeout``, 8 hours by default), which would free the lock.
    IDLE_TIMEOUT = 365 * 24 * 3600

    def __init__(self, symbol: str, *, alias: str = DEFAULT_DB_ALIAS) -> None:
        self.symbol = symbol
        self.alias = alias
        self._file: BinaryIO | None = None
        self._connection: Any = None
        self._kind: str | None = None  # "server" (GET_LOCK) or "file" (flock) once acquired: what verify() checks

    @property
    def name(self) -> str:
        """The MySQL lock name: server-wide, so it carries the database's name."""
        db = connections[self.alias].settings_dict["NAME"]
        name = f"kootabase.matcher.{db}.{self.symbol}"
        return name if len(name) <= 64 else "kootabase.matcher." + hashlib.sha256(name.encode()).hexdigest()[:40]

    @property
    def path(self) -> Path:
        return Path(settings.VAR_DIR) / f"matcher-{self.symbol}.lock"

    def acquire(self) -> None:
        if connections[self.alias].vendor == "mysql":
            self._acquire_mysql()
            self._kind = "server"
        else:
            self._acquire_file()
            self._kind = "file"

    def verify(self) -> None:
        """Check that the lock is still this process's. A named lock is freed when its
        connection closes (a server restart, a network cut, a ``KILL``); a ``flock`` no
        longer excludes anyone once its file is removed or replaced (a cleaned-up ``var``
        directory), since another process would lock a new file. Either is then taken
        again if it is free, and ``MatcherLockError`` if another holder has it now. A
        server that cannot be reached raises its ``DatabaseError``, and the next
        ``verify()`` tries again."""
        if self._kind == "file":
            self._verify_file()
        if self._kind != "server":
            return
        if self._connection is not None:
            try:
                with self._connection.cursor() as cursor:
                    cursor.execute("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()", [self.name])
                    (mine,) = cursor.fetchone()
                if mine == 1:
                    return
            except DatabaseError:
                pass
            logger.warning("matcher %s: lock %s lost with its connection; taking it again", self.symbol, self.name)
            self._close_connection()
        self._acquire_mysql()

    def _verify_file(self) -> None:
        if self._file is not None:
            try:
                current = self.path.stat()
            except FileNotFoundError:
                current = None
            held = os.fstat(self._file.fileno())
            if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
                return
            logger.warning("matcher %s: lock file %s was removed or replaced; taking it again", self.symbol, self.path)
            self._file.close()  # the old file's lock goes with it
            self._file = None
        self._acquire_file()

    def _acquire_file(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise MatcherLockError(f"a matcher for {self.symbol} is already running (lock {self.path})") from None
        handle.truncate(0)
        handle.write(f"{socket.gethostname()}:{os.getpid()}\n".encode())
        handle.flush()
        self._file = handle

    def _acquire_mysql(self) -> None:
        connection = connections.create_connection(self.alias)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION wait_timeout = %s", [self.IDLE_TIMEOUT])
                cursor.execute("SELECT GET_LOCK(%s, 0)", [self.name])
                (got,) = cursor.fetchone()
        except BaseException:
            connection.close()
            raise
        if got != 1:
            connection.close()
            raise MatcherLockError(f"a matcher for {self.symbol} is already running (lock {self.name})")
        self._connection = connection

    def release(self) -> None:
        self._kind = None
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._connection is not None:
            try:
                with self._connection.cursor() as cursor:
                    cursor.execute("SELECT RELEASE_LOCK(%s)", [self.name])
            except DatabaseError:  # the connection is gone, and the lock with it
                logger.warning("matcher %s: the lock's connection was gone at release", self.symbol)
            finally:
                self._close_connection()

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        with contextlib.suppress(DatabaseError):
            connection.close()


# --- One batch ------------------------------------------------------------------------


@dataclass
class _Batch:
    """What one batch changes, built in memory before the transaction."""

    orders: dict[int, Order] = field(default_factory=dict)
    changed: dict[int, Order] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)
    transfers: list[tuple[str, str, list[tuple[AccountKey, Decimal]]]] = field(default_factory=list)
    levels: dict[tuple[str, int], int] = field(default_factory=dict)  # (side, ticks) -> lots
    before: dict[int, tuple[Any, ...]] | None = None  # order id -> its _WRITTEN values as stored
    pending_ids: list[int] = field(default_factory=list)  # the pending orders it took, in order


def _cancel_reason(order: Order) -> str:
    """The reason of a requested cancel: staff's (``Order.cancel_reason``) or the user's."""
    return order.cancel_reason or "user_cancel"


#: Orders by id, whole rows (the makers a batch fills that it did not read).
_ORDERS_BY_ID = Statement(lambda ids: Order.objects.filter(pk__in=ids), ids=Many(Order._meta.pk))
_ORDERS_BY_ID_AT_ONCE = 512


class _QueueReads:
    """A matcher's reads of its market's queues, compiled once (their SQL never changes for
    a market and a batch size; compiling them cost a fifth of a small batch): the poll,
    which says in one statement the market's status and whether there are pending orders
    and cancel requests, and a batch of each — of pending orders all of them, or on a
    cancel-only market only those cancelled before they reached the book. Each kind is
    read through its own index, named: see ``kootabase.db.sql_using_index``. And the
    market's status under a row lock, which every batch's transaction reads."""

    def __init__(self, market_id: int, batch_size: int) -> None:
        def pending() -> Any:
            return Order.objects.filter(market_id=market_id, status=OrderStatus.PENDING)

        def cancels() -> Any:
            return Order.objects.filter(market_id=market_id, cancel_requested=True, status__in=_CANCELLABLE)

        self.poll = Statement(
            lambda: (
                Market.objects.filter(pk=market_id)
                .annotate(
                    has_pending=exists_using_index(pending(), _PENDING_INDEX),
                    has_cancels=exists_using_index(cancels(), _CANCELS_INDEX),
                )
                .values_list("status", "has_pending", "has_cancels")
            )
        )
        self.pending = Statement(lambda: pending().order_by("pk")[:batch_size], index=_PENDING_INDEX)
        self.pending_cancelled = Statement(
            lambda: pending().filter(cancel_requested=True).order_by("pk")[:batch_size], index=_PENDING_INDEX
        )
        self.cancels = Statement(lambda: cancels().order_by("pk")[:batch_size], index=_CANCELS_INDEX)
        # Read ahead (``MarketMatcher._read_ahead``): the pending orders past the batch in
        # flight, and which of the orders it took have had a cancel requested since.
        self.pending_after = Statement(
            lambda after: pending().filter(pk__gt=after).order_by("pk")[:batch_size],
            index=_PENDING_INDEX,
            after=Order._meta.pk,
        )
        self.cancel_requested_among = Statement(
            lambda ids: Order.objects.filter(pk__in=ids, cancel_requested=True), ids=Many(Order._meta.pk)
        )
        self.status_locked = Statement(
            lambda: Market.objects.select_for_update().filter(pk=market_id).values_list("status")
        )


class MarketMatcher:
    """The matcher of one market. ``start()``, then ``run_once()`` until stopped."""

    def __init__(self, *, symbol: str, batch_size: int = BATCH_SIZE, owner: str | None = None) -> None:
        self.symbol = symbol
        self.batch_size = batch_size
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.lock = MarketLock(symbol)
        self.market: Market | None = None
        self.epoch = 0
        self.last_seq = 0
        self.last_trade_no = 0
        self.priority = 0
        self.book: Any = None
        self._off_size: dict[int, Order] = {}  # resting orders and stops the rebuild left out (see there)
        self.marketdata: MarketDataWriter | None = None
        self._queue_reads: _QueueReads | None = None
        self._reader: BaseDatabaseWrapper | None = None  # the connection batches are read ahead on (MySQL/MariaDB)
        self._last_heartbeat = 0.0
        self._last_lock_check = time.monotonic()

    # -- lifecycle

    def start(self, *, take_lock: bool = True) -> None:
        """Take the lock, fence out every earlier writer, rebuild the book.
        ``take_lock=False`` exists for tests of the fencing alone."""
        if take_lock:
            self.lock.acquire()
        try:
            self.market = Market.objects.select_related("base", "quote").get(symbol=self.symbol)
            with transaction.atomic():
                state, _ = MatcherState.objects.get_or_create(market=self.market)
                state = MatcherState.objects.select_for_update().get(pk=state.pk)
                state.epoch += 1
                state.owner = self.owner[:128]
                state.heartbeat_at = timezone.now()
                state.save(update_fields=["epoch", "owner", "heartbeat_at"])
            self.epoch = state.epoch
            self.rebuild()
        except BaseException:
            self.lock.release()
            raise
        logger.info("matcher %s started: epoch %d, seq %d", self.symbol, self.epoch, self.last_seq)

    def stop(self) -> None:
        self._close_reader()
        self.lock.release()

    def rebuild(self) -> None:
        """Restore the book, the counters and the priority counter from committed rows.
        A resting order or held stop that is not on the market's tick or lot (its sizes
        changed after it was placed) is left out and remembered: the next batch cancels it."""
        market = self._market()
        spec = market_spec(market)
        state = MatcherState.objects.get(market=market)
        if state.epoch != self.epoch:
            raise FencingError(f"{self.symbol}: epoch {state.epoch} is not mine ({self.epoch})", symbol=self.symbol)
        self.last_seq, self.last_trade_no = state.last_seq, state.last_trade_no
        from marketdata.services import MarketDataWriter

        self.marketdata = MarketDataWriter(market)  # it reads what is stored afresh
        last_price = Trade.objects.filter(market=market).order_by("-trade_no").values_list("price", flat=True).first()
        bids: list[tuple[int, int, RestingOrder]] = []
        asks: list[tuple[int, int, RestingOrder]] = []
        stops: list[StopOrder] = []
        off_size: dict[int, Order] = {}
        problems: list[str] = []
        self.priority = 0
        self._off_size = {}
        for order in Order.objects.filter(market=market, status__in=(*_RESTING, OrderStatus.UNTRIGGERED)).order_by(
            "seq"
        ):
            try:
                if order.status == OrderStatus.UNTRIGGERED:
                    stops.append(self._stop_of(order))
                    continue
                resting = self._resting_of(order)
            except (ServiceError, CodecError) as exc:  # the market's sizes changed under it: see _apply
                off_size[order.pk] = order
                problems.append(f"{order.pk} ({getattr(exc, 'code', type(exc).__name__)})")
                continue
            priority = order.book_priority or 0
            self.priority = max(self.priority, priority)
            if order.side == Side.BUY:
                bids.append((-resting.price, priority, resting))
            else:
                asks.append((resting.price, priority, resting))
        if off_size:
            logger.warning(
                "matcher %s: orders off the tick or lot size (tick %s, lot %s) are left out of the book and "
                "cancelled in the next batch: %s",
                self.symbol,
                format(spec.tick_size.normalize(), "f"),
                format(spec.lot_size.normalize(), "f"),
                ", ".join(problems),
            )
        self.book = OrderBook.from_state(
            BookState(
                self.last_seq,
                self._last_price_ticks(last_price),
                [r for *_, r in sorted(bids)],
                [r for *_, r in sorted(asks)],
                stops,
            )
        )
        self._off_size = off_size
        priority = (
            Order.objects.filter(market=market).order_by("-book_priority").values_list("book_priority", flat=True)
        )
        self.priority = max(self.priority, priority.first() or 0)

    # -- the loop

    def run_once(self) -> int:
        """Process one batch of pending orders and cancels; returns how many. On a halted
        market nothing; on a cancel-only one only cancels (see ``orders.controls``)."""
        self._verify_lock_if_due()
        queues = self._queues()
        status, has_pending, has_cancels = queues.poll.rows()[0]  # one statement; an idle poll is just that
        if status == Market.Status.HALTED:
            self._heartbeat_if_due()
            return 0
        pending: list[Order] = []
        cancels: list[Order] = []
        if has_pending:
            # cancel-only: only those cancelled before they reached the book
            pending = (queues.pending if status == Market.Status.ACTIVE else queues.pending_cancelled).objects()
        if has_cancels:
            cancels = queues.cancels.objects()
        if not pending and not cancels and not self._off_size:  # orders off the sizes are work too
            self._heartbeat_if_due()
            return 0
        try:
            batch = self._apply(pending, cancels, stored=True, off_size=True)
            settled = len(self._off_size.keys() - {order.pk for order in cancels}) if self._off_size else 0
            if self._reads_ahead(status, pending):
                settled += self._commit_ahead(batch, status=status)
            else:
                with transaction.atomic():
                    self._commit(batch, status=status)
            self._off_size = {}
        except MarketStatusChanged as exc:
            logger.info("matcher %s: %s; the batch waits for the new status", self.symbol, exc)
            self._reset_after_failure()  # the book ran ahead of the rolled-back batch
            return 0
        except BaseException:
            logger.exception("matcher %s: batch failed; rebuilding the book from the database", self.symbol)
            self._reset_after_failure()
            raise
        return len(pending) + len(cancels) + settled

    def run_forever(self, *, should_stop: Any = lambda: False) -> None:
        while not should_stop():
            try:
                worked = self.run_once()
            except FencingError:
                raise
            except Exception:  # retried on a new connection (the server may have gone)
                logger.exception("matcher %s: round failed", self.symbol)
                connections[DEFAULT_DB_ALIAS].close()
                time.sleep(1.0)
                continue
            if not worked:
                time.sleep(IDLE_SLEEP)

    def apply_in_transaction(self, orders: list[Order]) -> None:
        """Run ``orders`` (``pending`` rows of this market, created in the caller's open
        transaction) through the book and write their outcome in that transaction, as a
        batch does. The book runs ahead of the database until the caller commits: if the
        caller's transaction rolls back, it must call ``rebuild()``. For ``orders.swap``."""
        if not connections[DEFAULT_DB_ALIAS].in_atomic_block:
            raise RuntimeError("apply_in_transaction needs the caller's transaction")
        self._commit(self._apply(orders, []), status=Market.Status.ACTIVE)

    # -- internals

    def _market(self) -> Market:
        if self.market is None:
            raise RuntimeError("the matcher has not been started")
        return self.market

    def _queues(self) -> _QueueReads:
        if self._queue_reads is None:
            self._queue_reads = _QueueReads(self._market().pk, self.batch_size)
        return self._queue_reads

    def _reset_after_failure(self) -> None:
        self._close_reader()  # it may be what failed: opened afresh when next needed
        try:
            self.rebuild()
        except FencingError:
            raise
        except Exception:
            logger.exception("matcher %s: rebuild failed", self.symbol)
            connections[DEFAULT_DB_ALIAS].close()
            self.book = None

    def _verify_lock_if_due(self) -> None:
        """Every ``HEARTBEAT_EVERY`` seconds: the lock is still held, or taken again (see
        ``MarketLock.verify``). Held by another connection, it is another matcher's only if
        that one has started, i.e. moved the epoch on: then ``LockLost``. Otherwise the
        holder is this process's own lost connection that the server has not closed yet
        (a network cut it has not noticed): the matcher runs on under fencing, which
        refuses its batches the moment another one starts, and takes the lock once free."""
        now = time.monotonic()
        if now - self._last_lock_check < HEARTBEAT_EVERY:
            return
        try:
            self.lock.verify()
        except MatcherLockError as exc:
            epoch = MatcherState.objects.filter(market=self._market()).values_list("epoch", flat=True).get()
            if epoch != self.epoch:
                raise LockLost(f"{exc}; epoch {epoch} is not mine ({self.epoch})", symbol=self.symbol) from None
            logger.warning(
                "matcher %s: %s, but epoch %d is still mine; running on under fencing", self.symbol, exc, epoch
            )
        self._last_lock_check = now

    def _heartbeat_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat < HEARTBEAT_EVERY:
            return
        self._last_heartbeat = now
        if self.book is None:  # a failed batch left the counters ahead of the database
            self.rebuild()
        with transaction.atomic():
            self._fence()

    def _check_status(self, status: str) -> None:
        """In the batch's transaction: the market still has the status the batch was worked
        out for. The row lock orders this against ``orders.controls.market_status_set``."""
        ((now,),) = self._queues().status_locked.rows()
        if now != status:
            raise MarketStatusChanged(f"the market went from {status} to {now}")

    def _fence(self) -> None:
        updated = row_update_where(
            MatcherState,
            where={"market_id": self._market().pk, "epoch": self.epoch},
            values={"last_seq": self.last_seq, "last_trade_no": self.last_trade_no, "heartbeat_at": timezone.now()},
        )
        if updated != 1:
            raise FencingError(
                f"{self.symbol}: another matcher took over (my epoch {self.epoch} is stale)", symbol=self.symbol
            )

    def _stop_of(self, order: Order) -> StopOrder:
        command = self._command(order, 0)
        assert isinstance(command, PlaceStop)
        return StopOrder(*command[1:])

    def _resting_of(self, order: Order) -> RestingOrder:
        """A resting order in the engine's integers: ``ServiceError`` or ``CodecError`` when
        it is not on the market's tick and lot (their sizes changed after it was placed)."""
        spec = market_spec(self._market())
        filled = spec.qty_to_lots(order.filled_quantity)
        return RestingOrder(
            order.pk,
            order.user_id,
            _SIDE_TO_ENGINE[order.side],
            to_ticks(spec, order.price),
            to_lots(spec, order.quantity) - filled,
            filled,
            int(order.post_only),
            1,
        )

    def _last_price_ticks(self, last_price: Decimal | None) -> int:
        """The last trade price in ticks; 0 (no last price: no stop fires before the next
        trade) when there is none, or when it is off a tick size changed since."""
        if last_price is None:
            return 0
        try:
            return market_spec(self._market()).price_to_ticks(last_price)
        except CodecError:
            logger.warning("matcher %s: the last trade price %s is off the tick size", self.symbol, last_price)
            return 0

    def _command(self, order: Order, seq: int) -> PlaceLimit | PlaceMarket | PlaceStop:
        spec = market_spec(self._market())
        side = _SIDE_TO_ENGINE[order.side]
        lots = to_lots(spec, order.quantity) if order.quantity is not None else 0
        price = to_ticks(spec, order.price) if order.price is not None else 0
        quote = (
            quote_budget_units(spec=spec, amount=order.quote_amount, taker_rate=order.taker_fee_rate)
            if order.quote_amount is not None
            else 0
        )
        if order.type == OrderType.LIMIT:
            tif = _TIF_TO_ENGINE[order.time_in_force]
            return PlaceLimit(seq, order.pk, order.user_id, side, price, lots, tif, order.post_only)
        if order.type == OrderType.MARKET:
            return PlaceMarket(seq, order.pk, order.user_id, side, lots, quote, price)
        trigger = TRIGGER_ABOVE if side == BUY else TRIGGER_BELOW
        stop = to_ticks(spec, order.stop_price, "stop_price")
        if order.type == OrderType.STOP_LIMIT:
            tif = _TIF_TO_ENGINE[order.time_in_force]
            return PlaceStop(seq, order.pk, order.user_id, side, trigger, stop, lots, 0, price, tif)
        return PlaceStop(seq, order.pk, order.user_id, side, trigger, stop, lots, quote, 0, GTC, price)

    def _apply(
        self,
        pending: list[Order],
        cancels: list[Order],
        *,
        stored: bool = False,
        off_size: bool = False,
        in_flight: dict[int, Order] | None = None,
    ) -> _Batch:
        """Run the commands through the book and work out every change, in memory.
        ``stored``: the orders are as just read from the database (their values are
        remembered, and the batch writes only what changed). ``off_size``: the batch also
        cancels the orders the rebuild left out (``_off_size_cancels``). ``in_flight``:
        the orders a batch not committed yet changed, whose makers are taken as it leaves
        them (``_read_ahead``)."""
        if self.book is None:
            self.rebuild()
        batch = _Batch(before={} if stored else None)
        settle: list[Order] = []
        if off_size and self._off_size:
            settle, cancels = self._off_size_cancels(cancels)
        for order in (*pending, *cancels):
            batch.orders[order.pk] = order
            if batch.before is not None:
                batch.before[order.pk] = _written(order)
        batch.pending_ids = [order.pk for order in pending]
        for order in settle:  # the remainder is cancelled and its hold released; the fills stay
            reason = _cancel_reason(order) if order.cancel_requested else "invalid"
            self._finish(batch, order, OrderStatus.CANCELLED, reason)
        runs: list[tuple[Order, list[Any]]] = []
        # The cancels first: a cancel the user was told is accepted is never overtaken by
        # an order this matcher has not taken yet (the orders then go in the order placed).
        for order in cancels:
            self.last_seq += 1
            order.cancel_seq = self.last_seq  # with ``seq``, the orders table holds every command: replayable
            batch.changed[order.pk] = order
            runs.append((order, self.book.apply(Cancel(self.last_seq, order.pk))))
        for order in pending:
            if order.cancel_requested:  # cancelled before it reached the book
                self._finish(batch, order, OrderStatus.CANCELLED, _cancel_reason(order))
                continue
            try:
                command = self._command(order, self.last_seq + 1)
            except (ServiceError, CodecError) as exc:
                logger.warning("matcher %s: order %s cannot enter the book: %s", self.symbol, order.pk, exc)
                self._finish(batch, order, OrderStatus.REJECTED, "invalid")
                continue
            self.last_seq += 1
            order.seq = self.last_seq
            batch.changed[order.pk] = order
            runs.append((order, self.book.apply(command)))
        self._load_makers(batch, runs, in_flight)
        for order, events in runs:
            self._translate(batch, order, events)
        return batch

    def _off_size_cancels(self, cancels: list[Order]) -> tuple[list[Order], list[Order]]:
        """The orders the rebuild left out (not on the market's tick or lot), and the
        batch's cancels with them first. Each gets its Cancel and ``cancel_seq`` like any
        cancel, so the orders table still records every command and a replay cancels them
        too; this book, which does not hold them, answers ``UNKNOWN_ORDER``, which
        ``_translate`` skips for an order already final. One with a cancel requested is
        taken as read with the batch's cancels."""
        requested = {order.pk: order for order in cancels}
        settle = [requested.pop(pk, order) for pk, order in self._off_size.items()]
        return settle, [*settle, *requested.values()]

    def _load_makers(
        self, batch: _Batch, runs: list[tuple[Order, list[Any]]], in_flight: dict[int, Order] | None
    ) -> None:
        wanted: set[int] = set()
        for _, events in runs:
            for event in events:
                if event[0] == EventKind.TRADE:
                    wanted.add(event.maker_order_id)
                elif event[0] in (EventKind.CANCELLED, EventKind.TRIGGERED, EventKind.FILLED):
                    wanted.add(event.order_id)
        missing = sorted(wanted - batch.orders.keys())
        if missing:
            loaded = {
                order.pk: order
                for start in range(0, len(missing), _ORDERS_BY_ID_AT_ONCE)
                for order in _ORDERS_BY_ID.objects(ids=missing[start : start + _ORDERS_BY_ID_AT_ONCE])
            }
            if in_flight:  # read ahead: as the batch in flight leaves them (see _read_ahead)
                for pk, order in loaded.items():
                    if pk in in_flight:
                        _written_from(in_flight[pk], order)
            batch.orders.update(loaded)
            if batch.before is not None:
                batch.before.update((pk, _written(order)) for pk, order in loaded.items())

    def _translate(self, batch: _Batch, command_order: Order, events: list[Any]) -> None:
        incoming = [command_order]
        for event in events:
            kind = event[0]
            if kind == EventKind.ACCEPTED:
                order = batch.orders[event.order_id]
                order.status = OrderStatus.UNTRIGGERED if order.is_stop else OrderStatus.OPEN
                batch.changed[order.pk] = order
            elif kind == EventKind.REJECTED:
                order = batch.orders[event.order_id]
                if order.is_final:  # a cancel that came after the order filled in this batch
                    continue
                if event.reason == Reason.UNKNOWN_ORDER:
                    # A cancel for an order the book does not hold: it can never fill.
                    logger.warning("matcher %s: order %s was not in the book", self.symbol, order.pk)
                    self._finish(batch, order, OrderStatus.CANCELLED, _cancel_reason(order))
                else:
                    self._finish(batch, order, OrderStatus.REJECTED, Reason(event.reason).name.lower())
            elif kind == EventKind.TRADE:
                self._trade(batch, event)
            elif kind == EventKind.PARTIALLY_FILLED:
                order = batch.orders[event.order_id]
                order.status = OrderStatus.PARTIALLY_FILLED
                batch.changed[order.pk] = order
            elif kind == EventKind.FILLED:
                self._finish(batch, batch.orders[event.order_id], OrderStatus.FILLED, "")
            elif kind == EventKind.CANCELLED:
                order = batch.orders[event.order_id]
                reason = _cancel_reason(order) if event.reason == Reason.USER_CANCEL else Reason(event.reason).name
                self._finish(batch, order, OrderStatus.CANCELLED, reason.lower())
            elif kind == EventKind.EXPIRED:
                self._finish(
                    batch, batch.orders[event.order_id], OrderStatus.EXPIRED, Reason(event.reason).name.lower()
                )
            elif kind == EventKind.TRIGGERED:
                order = batch.orders[event.order_id]
                order.status = OrderStatus.OPEN
                batch.changed[order.pk] = order
                incoming.append(order)
            elif kind == EventKind.LEVEL:  # converted to prices once per level, by the market data
                batch.levels[(_SIDE_FROM_ENGINE[event.side], event.price)] = event.qty
        for order in incoming:  # orders that started resting get their time priority
            if order.status in _RESTING and order.book_priority is None:
                self.priority += 1
                order.book_priority = self.priority
                batch.changed[order.pk] = order

    def _trade(self, batch: _Batch, event: Any) -> None:
        market = self._market()
        spec = market_spec(market)
        maker, taker = batch.orders[event.maker_order_id], batch.orders[event.taker_order_id]
        price = spec.ticks_to_price(event.price)
        quantity = spec.lots_to_qty(event.qty)
        notional = spec.units_to_quote(event.price * event.qty)
        precision = market.quote.precision
        fees = {}
        with localcontext(MONEY):
            for order, is_taker in ((maker, False), (taker, True)):
                order.filled_quantity += quantity
                order.filled_quote += notional
                if is_taker:
                    order.taker_quote += notional
                due = fee_due(
                    taker_quote=order.taker_quote,
                    maker_quote=order.filled_quote - order.taker_quote,
                    rates=FeeRates(maker=order.maker_fee_rate, taker=order.taker_fee_rate),
                    precision=precision,
                )
                fees[order.pk] = due - order.fee_paid
                order.fee_paid = due
                batch.changed[order.pk] = order
            buyer, seller = (taker, maker) if event.taker_side == BUY else (maker, taker)
            buyer_fee, seller_fee = fees[buyer.pk], fees[seller.pk]
            buyer.hold_left -= notional + buyer_fee
            seller.hold_left -= quantity
            if buyer.hold_left < 0 or seller.hold_left < 0:
                raise AssertionError(f"trade overdraws a hold: orders {buyer.pk}/{seller.pk}")
            quote, base = market.quote_id, market.base_id
            legs: list[tuple[AccountKey, Decimal]] = [
                ((buyer.user_id, quote, AccountKind.LOCKED), (notional + buyer_fee).copy_negate()),
                ((seller.user_id, quote, AccountKind.AVAILABLE), notional - seller_fee),
                ((seller.user_id, base, AccountKind.LOCKED), quantity.copy_negate()),
                ((buyer.user_id, base, AccountKind.AVAILABLE), quantity),
            ]
            if buyer_fee + seller_fee:
                legs.append(((None, quote, AccountKind.FEES), buyer_fee + seller_fee))
        self.last_trade_no += 1
        key = f"trade:{self.symbol}:{self.last_trade_no}"
        batch.transfers.append((EntryKind.TRADE, key, legs))
        batch.trades.append(
            model_build(
                Trade,
                {
                    "market_id": market.pk,
                    "trade_no": self.last_trade_no,
                    "maker_order_id": maker.pk,
                    "taker_order_id": taker.pk,
                    "maker_user_id": maker.user_id,
                    "taker_user_id": taker.user_id,
                    "price": price,
                    "quantity": quantity,
                    "quote_amount": notional,
                    "taker_side": _SIDE_FROM_ENGINE[event.taker_side],
                    "maker_fee": fees[maker.pk],
                    "taker_fee": fees[taker.pk],
                },
            )
        )

    def _finish(self, batch: _Batch, order: Order, status: str, reason: str) -> None:
        """A final state: release whatever the order still holds."""
        order.status = status
        order.reject_reason = reason
        batch.changed[order.pk] = order
        if order.hold_left > 0:
            account = (order.user_id, order.hold_currency_id)
            batch.transfers.append(
                (
                    EntryKind.RELEASE,
                    f"release:{order.pk}",
                    [
                        ((*account, AccountKind.LOCKED), order.hold_left.copy_negate()),
                        ((*account, AccountKind.AVAILABLE), order.hold_left),
                    ],
                )
            )
            order.hold_left = Decimal(0)

    def _commit(self, batch: _Batch, *, status: str) -> None:
        # The writes are sent without waiting for the server: the Python work after each
        # (the next statement, the batch's events) goes on while the server runs it. Any
        # failure still rolls the whole batch back.
        with writes_streamed():
            self._write(batch, self._accounts(batch, status))

    def _accounts(self, batch: _Batch, status: str) -> dict[AccountKey, LedgerAccount]:
        """The batch's first statements: the fence, the market's status, the ledger accounts."""
        self._fence()
        self._check_status(status)
        keys = {key for _, _, legs in batch.transfers for key, _ in legs}
        return ledger_accounts_ensure(keys=keys) if keys else {}

    def _write(
        self, batch: _Batch, accounts: dict[AccountKey, LedgerAccount], *, sent: Callable[[], None] | None = None
    ) -> None:
        """Write the batch. The statements whose answers it needs come first (the market
        data's state, the ledger's locks and journal entries), then the writes nothing
        reads back (legs, balances, orders, trades); ``sent`` is called once the last of
        those is handed to the connection, and the users' messages are worked out after."""
        now = timezone.now()
        changed = list(batch.changed.values())
        for order in changed:
            order.updated_at = now
        for trade in batch.trades:
            trade.created_at = now  # as inserted below: the market data folds them first
        market = self._market_data(batch)
        ledger_post_batch(
            postings=[
                Posting(
                    kind=kind,
                    legs=[Leg(accounts[key], amount) for key, amount in legs],
                    reference=reference,
                    idempotency_key=reference,
                )
                for kind, reference, legs in batch.transfers
            ],
            savepoint=False,  # any failure rolls the whole batch back
        )
        rows_update(Order, changed, _WRITTEN, before=batch.before)
        # After the order updates: every order a trade refers to is then already locked
        # exclusively by this batch. Inserted first, the trades' foreign-key checks took
        # shared locks on those orders, which the updates then had to upgrade, and a
        # user's cancel (an exclusive lock request on the same order) waiting in between
        # made a deadlock.
        rows_insert(Trade, batch.trades, keys=False, now=now)  # trades are known by their number
        if sent is not None:
            sent()
        self._publish(batch, changed, market)

    def _market_data(self, batch: _Batch) -> list[tuple[str, dict[str, Any]]]:
        """Inside the batch's transaction: fold it into the market-data aggregates; the
        market's broadcast, with the depth ``seq``."""
        from marketdata.services import market_event

        if not batch.trades and not batch.levels:
            return []
        assert self.marketdata is not None  # made by rebuild(), with the book
        applied = self.marketdata.apply_batch(trades=batch.trades, levels=batch.levels, top=self.book.top())
        return [(market_group(self.symbol), market_event(market=self._market(), trades=batch.trades, applied=applied))]

    def _publish(self, batch: _Batch, changed: list[Order], messages: list[tuple[str, dict[str, Any]]]) -> None:
        """Queue the broadcasts for after the commit: the market's (``messages``), and one
        ``user.events`` message per user with their changed orders and fills (the ledger
        announces the new balances itself, see wallets.events)."""
        from marketdata.services import user_events

        market = self._market()
        cache_market = Order.market.field.set_cached_value  # what ``order.market = market`` caches
        for order in changed:
            cache_market(order, market)
        users = user_events(market=market, orders=changed, trades=batch.trades)
        broadcasts_after_commit([*messages, *((user_group(user_id), message) for user_id, message in users)])

    # -- reading ahead

    def _reads_ahead(self, status: str, pending: list[Order]) -> bool:
        """Whether the batch is part of a backlog (its read of pending orders was full) on
        an active market, on MySQL/MariaDB: then the next batches are read and worked out
        while each is written (``_commit_ahead``)."""
        connection = connections[DEFAULT_DB_ALIAS]
        return (
            len(pending) >= self.batch_size
            and status == Market.Status.ACTIVE
            and connection.vendor == "mysql"
            and not connection.in_atomic_block
        )

    def _commit_ahead(self, batch: _Batch, *, status: str) -> int:
        """Commit ``batch`` and the backlog's next ones (up to ``AHEAD_BATCHES``), each
        worked out while the one before is written; the last, or one that is not full, is
        committed as any batch. Returns how many orders and cancels the batches after
        ``batch`` took. A failure rolls back the batch being written, and the caller
        rebuilds the book (the next one ran through it already)."""
        taken = 0
        try:
            for _ in range(AHEAD_BATCHES):
                ahead = self._commit_reading_ahead(batch, status=status)
                if ahead is None:
                    return taken
                batch, count, full = ahead
                taken += count
                if not full:
                    break
        finally:
            # Opened again by the next backlog: a connection idle between backlogs could
            # have been closed by the server meanwhile, and nothing would notice before a read.
            self._close_reader()
        with transaction.atomic():
            self._commit(batch, status=status)
        return taken

    def _commit_reading_ahead(self, batch: _Batch, *, status: str) -> tuple[_Batch, int, bool] | None:
        """Commit ``batch`` with its writes sent to the server as one text
        (``kootabase.db.writes_deferred``), and while the server runs them read the next
        batch and run it through the book (``_read_ahead``); then wait for the writes and
        commit. Returns the next batch, how many orders and cancels it took and whether
        its read of pending orders was full; None when there is none."""
        with transaction.atomic():
            accounts = self._accounts(batch, status)
            writes = writes_deferred()
            try:
                self._write(batch, accounts, sent=writes.launch)
                ahead = self._read_ahead(batch)
                writes.wait()
            finally:
                writes.close()
        return ahead

    def _read_ahead(self, flight: _Batch) -> tuple[_Batch, int, bool] | None:
        """The next batch, read on a connection of its own while ``flight``'s writes are
        with the server, and run through the book. The database does not hold ``flight``'s
        changes yet, so its reads are made into what a read after ``flight``'s commit would
        return: the pending orders after the last one ``flight`` took; the cancel requests
        without those of the orders it finished and with those of the orders it put in the
        book (still ``pending`` in the database); and every order ``flight`` changed, with
        the values it gave it (the matcher's columns; the users' own, such as
        ``cancel_requested``, as read now). An order committed pending with a lower id than
        the last one ``flight`` took is read when the queues are read afresh, after at
        most ``AHEAD_BATCHES``."""
        queues = self._queues()
        with self._on_reader():
            status, has_pending, has_cancels = queues.poll.rows()[0]
            if status != Market.Status.ACTIVE:
                return None  # the next round reads the queues for the status it finds
            after = max(flight.pending_ids, default=0)
            pending = queues.pending_after.objects(after=after) if has_pending and after else []
            cancels = self._cancels_after(flight, read=has_cancels)
            if not pending and not cancels:
                return None
            batch = self._apply(pending, cancels, stored=True, in_flight=flight.changed)
        return batch, len(pending) + len(cancels), len(pending) >= self.batch_size

    def _cancels_after(self, flight: _Batch, *, read: bool) -> list[Order]:
        """The cancel requests as a read after ``flight``'s commit returns them (see
        ``_read_ahead``), on the reading connection."""
        queues = self._queues()
        rows: list[Order] = queues.cancels.objects() if read else []
        placed = [pk for pk in flight.pending_ids if flight.changed[pk].status in _CANCELLABLE]
        for start in range(0, len(placed), _ORDERS_BY_ID_AT_ONCE):
            rows += queues.cancel_requested_among.objects(ids=placed[start : start + _ORDERS_BY_ID_AT_ONCE])
        cancels: dict[int, Order] = {}
        for order in rows:
            after = flight.changed.get(order.pk)
            if after is not None:
                if after.status not in _CANCELLABLE:
                    continue  # finished by the batch in flight
                _written_from(after, order)
            cancels[order.pk] = order
        return [cancels[pk] for pk in sorted(cancels)][: self.batch_size]

    def reading_connection(self) -> BaseDatabaseWrapper:
        """The connection batches are read ahead on (made on first use): it reads what is
        committed while the default one has a batch in flight."""
        if self._reader is None:
            self._reader = connections.create_connection(DEFAULT_DB_ALIAS)
        return self._reader

    @contextlib.contextmanager
    def _on_reader(self) -> Iterator[None]:
        """Inside, this thread's default connection is the reading one."""
        writer = connections[DEFAULT_DB_ALIAS]
        connections[DEFAULT_DB_ALIAS] = self.reading_connection()
        try:
            yield
        finally:
            connections[DEFAULT_DB_ALIAS] = writer

    def _close_reader(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(DatabaseError):
                self._reader.close()


def _written_from(source: Order, target: Order) -> None:
    """``target`` (an order as read) with the values of the matcher's columns ``source``
    has (the same order as a batch in flight leaves it)."""
    for name in _WRITTEN:
        setattr(target, name, getattr(source, name))


def matchers_run(*, symbols: list[str], should_stop: Any = lambda: False, batch_size: int = BATCH_SIZE) -> None:
    """Run the matchers of ``symbols`` in one process, round robin, until told to stop;
    after each round, the pending swaps whose markets this process runs (orders.swap).

    A market another matcher took over (``FencingError``, ``LockLost``) is given up and
    the others go on; when none is left, that error is raised."""
    from orders.swap import swaps_execute

    matchers: list[MarketMatcher] = []
    try:
        for symbol in symbols:
            matcher = MarketMatcher(symbol=symbol, batch_size=batch_size)
            matcher.start()
            matchers.append(matcher)
        # What start-up loaded (modules, settings, the markets) lives as long as the process:
        # out of the collector's sight, the collections that a batch's many short-lived
        # objects trigger no longer walk it each time (13-25 % of a batch's CPU otherwise).
        gc.freeze()
        while not should_stop():
            worked = 0
            for matcher in list(matchers):
                try:
                    worked += matcher.run_once()
                except FencingError as exc:
                    _give_up(matchers, matcher, exc)
                except Exception:  # retried next turn, on a new connection (the server may have gone)
                    logger.exception("matcher %s: round failed", matcher.symbol)
                    connections[DEFAULT_DB_ALIAS].close()
                    time.sleep(1.0)
            try:
                worked += swaps_execute(matchers=matchers)  # swaps whose markets are all run here
            except FencingError as exc:
                fenced = next((m for m in matchers if m.symbol == exc.symbol), None)
                if fenced is None:
                    raise
                _give_up(matchers, fenced, exc)
            except Exception:  # each swap is failed and rebuilt on its own: this is a DB outage; retried
                logger.exception("swaps: execution round failed")
                time.sleep(1.0)
            if not worked:
                time.sleep(IDLE_SLEEP)
    finally:
        try:
            for matcher in matchers:
                _stop_quietly(matcher)
        finally:
            broadcasts_flush()  # what was committed is also announced before the process ends


def _give_up(matchers: list[MarketMatcher], matcher: MarketMatcher, exc: FencingError) -> None:
    """Stop running ``matcher``'s market here: another matcher runs it now. Raises ``exc``
    when it was the last market of this process."""
    logger.error("matcher %s stopped: %s", matcher.symbol, exc)
    matchers.remove(matcher)
    _stop_quietly(matcher)
    if not matchers:
        raise exc


def _stop_quietly(matcher: MarketMatcher) -> None:
    try:
        matcher.stop()
    except Exception:  # the others are still released
        logger.exception("matcher %s: releasing its lock failed", matcher.symbol)
