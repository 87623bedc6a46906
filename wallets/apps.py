from django.apps import AppConfig


class WalletsConfig(AppConfig):
    """Currencies, wallets and the double-entry ledger."""

    name = "wallets"
    verbose_name = "Wallets and ledger"

    def ready(self) -> None:
        from wallets import catalog  # noqa: F401  (connects the catalog's change signals)
