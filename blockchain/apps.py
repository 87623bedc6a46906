from django.apps import AppConfig


class BlockchainConfig(AppConfig):
    """Networks, deposit addresses, deposit scanning and withdrawals."""

    name = "blockchain"
    verbose_name = "Blockchain"
