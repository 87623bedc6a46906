"""Demo network: the embedded chain as "ethereum", with ETH and the demo token listed as
USDT. Idempotent. With a real node configured (ETH_RPC_URL) nothing is listed: the
operator adds networks and assets in the back office."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings

from blockchain.chains.embedded_constants import CHAIN_ID, DEMO_TOKEN_ADDRESS, DEMO_TOKEN_DECIMALS
from blockchain.models import Asset, Network
from wallets import selectors, services
from wallets.models import Currency

NETWORK = "ethereum"
CURRENCIES = (("ETH", "Ether", 18), ("USDT", "Tether USD", 6))
ASSETS = (
    # currency, contract, decimals, min deposit, min withdrawal, fee (review thresholds: aml/demo.py)
    ("ETH", "", 18, Decimal("0.001"), Decimal("0.01"), Decimal("0.001")),
    ("USDT", DEMO_TOKEN_ADDRESS, DEMO_TOKEN_DECIMALS, Decimal("1"), Decimal("10"), Decimal("1")),
)


def seed() -> list[str]:
    if settings.BLOCKCHAIN_RPC_URLS.get(NETWORK) or not settings.BLOCKCHAIN_EMBEDDED_CHAIN:
        return ["chain   a node is configured: add networks and assets in the back office"]
    for code, name, precision in CURRENCIES:
        if selectors.currency_get(code=code) is None:
            services.currency_create(code=code, name=name, kind=Currency.Kind.CRYPTO, precision=precision)
    network, _ = Network.objects.get_or_create(
        name=NETWORK,
        defaults={
            "display_name": "Ethereum (embedded chain)",
            "chain_id": CHAIN_ID,
            "confirmations": 3,
            "explorer_tx_url": "",
            "explorer_address_url": "",
        },
    )
    for code, contract, decimals, min_deposit, min_withdrawal, fee in ASSETS:
        Asset.objects.get_or_create(
            network=network,
            currency=Currency.objects.get(code=code),
            defaults={
                "contract_address": contract,
                "decimals": decimals,
                "min_deposit": min_deposit,
                "min_withdrawal": min_withdrawal,
                "withdrawal_fee": fee,
            },
        )
    return [f"chain   {network.name} (embedded, chain id {network.chain_id}): ETH, USDT at {DEMO_TOKEN_ADDRESS}"]
