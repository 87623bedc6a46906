"""A bounded fuzz run against the app's own OpenAPI schema: no generated request, valid or
not, gets a 5xx. Requests are authenticated as a funded trader, so they reach the services."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """As Django's own test client does: the request's end must not close the connection that
    holds the test's transaction (the app is called directly, so its signals fire)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def trader_token(db, password):
    from decimal import Decimal

    from accounts.services import tokens_issue, user_register
    from orders import demo as orders_demo
    from wallets.models import Currency
    from wallets.services import adjustment_post

    orders_demo.seed()
    user = user_register(email="fuzz@example.com", password=password)
    for currency in Currency.objects.all():
        adjustment_post(
            user=user, currency=currency, amount=Decimal(1000), direction="credit", reason="fuzz", actor="test"
        )
    return tokens_issue(user=user)["access"]


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_produces_a_server_error(case, trader_token):
    case.call_and_validate(headers={"Authorization": f"Bearer {trader_token}"}, checks=[not_a_server_error])
