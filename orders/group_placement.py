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
from concurrent.futures import Future

from django.conf import settings
from django.db import close_old_connections

from kootabase.errors import ServiceError
from orders.services import Placement, PlaceRequest, order_place_or_get, orders_place_many

logger = logging.getLogger(__name__)


class GroupPlacer:
    """One placement thread and its queue of waiting orders."""

    def __init__(self, *, group_max: int) -> None:
        self.group_max = group_max
        self._waiting: queue.SimpleQueue[tuple[PlaceRequest, Future[Placement | ServiceError]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="order-placement", daemon=True)
        self._thread.start()

    def place(self, request: PlaceRequest) -> Placement:
        """Place the order with whatever else is waiting; raises its refusal."""
        future: Future[Placement | ServiceError] = Future()
        self._waiting.put((request, future))
        outcome = future.result()
        if isinstance(outcome, ServiceError):
            raise outcome
        return outcome

    def _run(self) -> None:
        while True:
            group = [self._waiting.get()]
            while len(group) < self.group_max:
                try:
                    group.append(self._waiting.get_nowait())
                except queue.Empty:
                    break
            self._place(group)

    def _place(self, group: list[tuple[PlaceRequest, Future[Placement | ServiceError]]]) -> None:
        close_old_connections()  # as a request would: replace a connection that broke or aged
        try:
            outcomes = orders_place_many(requests=[request for request, _ in group])
        except Exception as exc:  # every waiting request hears of it
            logger.exception("placing a group of %d orders failed", len(group))
            for _, future in group:
                future.set_exception(exc)
            return
        for (_, future), outcome in zip(group, outcomes, strict=True):
            future.set_result(outcome)


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
