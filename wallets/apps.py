from django.apps import AppConfig


class WalletsConfig(AppConfig):
    """Currencies, wallets and the double-entry ledger."""

    name = "wallets"
    verbose_name = "Wallets and ledger"
