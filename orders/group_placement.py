"""Group commit for order placement: the orders of concurrent requests in one web process
share one transaction.

A placement is a handful of statements and a commit (the order's insert, the locked
balances, the hold's entry, legs and balances). Placed one request at a time, every order
pays for all of them: the round trips, the server's work per statement and the commit.
Here a request hands its order to the process's placement thread and waits; the thread
places everything that is waiting as one ``orders_place_many`` call (one transaction,
each order accepted or refused on its own) and answers each request. While it places one
group, the next gathers; under light load a group is one order and nothing waits for a
timer, so the only cost is the hand-over between two threads.

On when ``ORDER_PLACEMENT_GROUPING`` is set (production and the embedded run); off, the
request's own thread places its order alone. Either way the outcome of a request is the
one ``order_place_or_get`` gives.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import uuid
from concurrent.futures import Future

from django.conf import settings
from django.db import close_old_connections

from kootabase.errors import ServiceError
from orders.services import Placement, PlaceRequest, order_place_or_get, orders_place_many

logger = logging.getLogger(__name__)

#: How often a waiting request checks that the placement thread is alive (seconds).
THREAD_CHECK_EVERY = 1.0

_Waiting = tuple[PlaceRequest, "Future[Placement | ServiceError]"]


class GroupPlacer:
    """One placement thread and its queue of waiting orders.

    - **Every request has a ``client_order_id``** before it is queued (one is made for a
      request without): if a group fails for a reason other than a refusal, each of its
      requests is placed again on its own, and one whose order was committed after all
      (the connection lost during the commit) is answered with that order, not placed
      twice.
    - **A group never holds one user's ``client_order_id`` twice**: the repeat waits for
      the next group, so each group is one transaction and a repeat is answered from what
      the first request left.
    - **The thread never ends on an error**, and a waiting request checks every
      ``THREAD_CHECK_EVERY`` seconds that it is alive: a thread that stopped anyway is
      replaced, and the queue it left is placed by the new one.
    """

    def __init__(self, *, group_max: int) -> None:
        self.group_max = group_max
        self._waiting: queue.SimpleQueue[_Waiting] = queue.SimpleQueue()
        self._held: _Waiting | None = None  # a repeat held back from the group before
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()

    def place(self, request: PlaceRequest) -> Placement:
        """Place the order with whatever else is waiting; raises its refusal."""
        generated = not request.client_order_id
        if generated:
            request = request._replace(client_order_id=uuid.uuid4().hex, fresh_id=True)
        future: Future[Placement | ServiceError] = Future()
        self._waiting.put((request, future))
        while True:
            self.ensure_running()
            try:
                outcome = future.result(timeout=THREAD_CHECK_EVERY)
                break
            except TimeoutError:
                if future.done():  # the placement itself failed with a timeout (a socket's, say)
                    raise
                continue
        if isinstance(outcome, ServiceError):
            raise outcome
        if generated and not outcome.created:  # the id was made here: the stored order is this request's
            outcome = Placement(outcome.order, True)
        return outcome

    def ensure_running(self) -> None:
        """Start the placement thread if there is none or it has stopped."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._thread_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            if self._thread is not None:
                logger.error("the order placement thread had stopped; starting a new one")
            self._thread = threading.Thread(target=self._run, name="order-placement", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            group: list[_Waiting] = []
            try:
                group = self._gather()
                self._place(group)
            except Exception as exc:  # the thread goes on: every later request would wait otherwise
                logger.exception("order placement failed outside a group's placement")
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)

    def _gather(self) -> list[_Waiting]:
        """The next group: what waits, in order, up to ``group_max``, ending before a
        request whose (user, client_order_id) is already in it."""
        first, self._held = self._held or self._waiting.get(), None
        group = [first]
        keys = {_key(first[0])}
        while len(group) < self.group_max:
            try:
                waiting = self._waiting.get_nowait()
            except queue.Empty:
                break
            key = _key(waiting[0])
            if key in keys:
                self._held = waiting
                break
            keys.add(key)
            group.append(waiting)
        return group

    def _place(self, group: list[_Waiting]) -> None:
        close_old_connections()  # as a request would: replace a connection that broke or aged
        try:
            outcomes = orders_place_many(requests=[request for request, _ in group])
        except Exception:  # rolled back: each request is placed again on its own
            logger.exception("placing a group of %d orders failed; placing each on its own", len(group))
            self._place_each(group)
            return
        for (_, future), outcome in zip(group, outcomes, strict=True):
            future.set_result(outcome)

    def _place_each(self, group: list[_Waiting]) -> None:
        for request, future in group:
            try:
                close_old_connections()
                # Its group may have been committed after all: the id is no longer fresh.
                outcome = orders_place_many(requests=[request._replace(fresh_id=False)])[0]
            except Exception as exc:
                logger.exception("placing order %s on its own failed", request.client_order_id)
                future.set_exception(exc)
            else:
                future.set_result(outcome)


def _key(request: PlaceRequest) -> tuple[int, str]:
    return (request.user.pk, request.client_order_id)


_placer: GroupPlacer | None = None
_placer_pid = 0
_placer_lock = threading.Lock()


def _group_placer() -> GroupPlacer:
    global _placer, _placer_pid
    pid = os.getpid()
    if _placer is None or _placer_pid != pid:  # a forked process starts its own thread
        with _placer_lock:
            if _placer is None or _placer_pid != pid:
                _placer, _placer_pid = GroupPlacer(group_max=settings.ORDER_PLACEMENT_GROUP_MAX), pid
    return _placer


def order_place_grouped(request: PlaceRequest) -> Placement:
    """Place one request's order (``order_place_or_get``'s outcome), in a group with the
    other requests' orders of this process when ``ORDER_PLACEMENT_GROUPING`` is on."""
    if not settings.ORDER_PLACEMENT_GROUPING:
        return order_place_or_get(
            user=request.user,
            market_symbol=request.market_symbol,
            client_order_id=request.client_order_id,
            **request.fields,
        )
    return _group_placer().place(request)
