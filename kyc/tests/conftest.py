"""KYC fixtures: the demo markets and currencies and traders at tier 0 (the orders
fixtures), a real trade that gives ETH its price, the embedded chain for withdrawals,
and documents to upload."""

from __future__ import annotations

from decimal import Decimal
from functools import partial

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from blockchain.models import Withdrawal
from blockchain.tests.conftest import chain, eth_asset, network, usdt_asset  # noqa: F401 - fixtures
from kyc.models import KycDocument, KycProfile, KycSubmission
from marketdata.tests.conftest import drain, place
from orders.tests.conftest import alice, alice_client, bob, client_of, eth, markets, trader, usdt  # noqa: F401 - fixtures
from wallets.models import Currency, Transfer
from wallets.tests.factories import CurrencyFactory, ledger_state, state_unchanged

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
def usd(db) -> Currency:
    return CurrencyFactory(code="USD", name="US Dollar", kind=Currency.Kind.FIAT, precision=2)


def trade_at(price: str, symbol: str = "ETH-USDT") -> None:
    """Two other traders trade 1 lot-sized quantity at ``price`` through the real API and matcher."""
    seller, buyer = trader(f"seller-{price}@example.com"), trader(f"buyer-{price}@example.com")
    place(client_of(seller), market=symbol, side="sell", price=price, quantity="0.01")
    place(client_of(buyer), market=symbol, side="buy", price=price, quantity="0.01")
    drain(symbol)


@pytest.fixture
def eth_at_2000(markets) -> None:  # noqa: F811 - the imported fixture
    trade_at("2000")


def state() -> tuple:
    """Everything a refused request must leave as it was."""
    return (
        *ledger_state(),
        Transfer.objects.count(),
        Withdrawal.objects.count(),
        list(KycProfile.objects.order_by("pk").values_list("pk", "tier_id")),
        list(KycSubmission.objects.order_by("pk").values_list("pk", "status")),
        KycDocument.objects.count(),
    )


@pytest.fixture
def unchanged():
    return partial(state_unchanged, state)


def upload(content: bytes, name: str = "scan.bin", content_type: str = "application/octet-stream"):
    return SimpleUploadedFile(name, content, content_type=content_type)
