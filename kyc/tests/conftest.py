"""KYC fixtures: the demo markets and currencies, traders at tier 0, a real trade that
gives ETH its price, the embedded chain for withdrawals, and documents to upload."""

from __future__ import annotations

from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from blockchain.models import Withdrawal
from blockchain.tests.conftest import chain, eth_asset, network, usdt_asset  # noqa: F401 - fixtures
from kyc.models import KycDocument, KycProfile, KycSubmission
from marketdata.tests.conftest import drain, place
from orders import demo
from orders.models import Market
from wallets.models import Currency, JournalEntry, LedgerAccount, LedgerLeg, Transfer
from wallets.tests.factories import CurrencyFactory, UserFactory, fund

D = Decimal
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"0" * 64 + b"\n%%EOF\n"


@pytest.fixture(autouse=True)
def _private_dirs(settings, tmp_path):
    """Documents and matcher lock files of the tests live apart from a development instance."""
    settings.VAR_DIR = tmp_path
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private"


@pytest.fixture
def markets(db) -> dict[str, Market]:
    demo.seed()
    return {m.symbol: m for m in Market.objects.select_related("base", "quote")}


@pytest.fixture
def usdt(markets) -> Currency:
    return Currency.objects.get(code="USDT")


@pytest.fixture
def eth(markets) -> Currency:
    return Currency.objects.get(code="ETH")


@pytest.fixture
def usd(db) -> Currency:
    return CurrencyFactory(code="USD", name="US Dollar", kind=Currency.Kind.FIAT, precision=2)


def trader(email: str):
    user = UserFactory(email=email)
    for code, amount in (("USDT", "100000"), ("ETH", "100")):
        fund(user, Currency.objects.get(code=code), amount)
    return user


@pytest.fixture
def alice(markets):
    return trader("alice@example.com")


@pytest.fixture
def bob(markets):
    return trader("bob@example.com")


def client_of(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def alice_client(alice) -> APIClient:
    return client_of(alice)


def trade_at(price: str, symbol: str = "ETH-USDT") -> None:
    """Two other traders trade 1 lot-sized quantity at ``price`` through the real API and matcher."""
    seller, buyer = trader(f"seller-{price}@example.com"), trader(f"buyer-{price}@example.com")
    place(client_of(seller), market=symbol, side="sell", price=price, quantity="0.01")
    place(client_of(buyer), market=symbol, side="buy", price=price, quantity="0.01")
    drain(symbol)


@pytest.fixture
def eth_at_2000(markets) -> None:
    trade_at("2000")


def state() -> tuple:
    """Everything a refused request must leave as it was."""
    return (
        JournalEntry.objects.count(),
        LedgerLeg.objects.count(),
        list(LedgerAccount.objects.order_by("pk").values_list("pk", "balance")),
        Transfer.objects.count(),
        Withdrawal.objects.count(),
        list(KycProfile.objects.order_by("pk").values_list("pk", "tier_id")),
        list(KycSubmission.objects.order_by("pk").values_list("pk", "status")),
        KycDocument.objects.count(),
    )


@pytest.fixture
def unchanged():
    @contextmanager
    def check():
        before = state()
        yield
        assert state() == before

    return check


def upload(content: bytes, name: str = "scan.bin", content_type: str = "application/octet-stream"):
    return SimpleUploadedFile(name, content, content_type=content_type)
