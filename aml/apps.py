from django.apps import AppConfig


class AmlConfig(AppConfig):
    """Anti-money-laundering rules over deposits, withdrawals and transfers, and the
    compliance review queue of the items they flag."""

    name = "aml"
    verbose_name = "AML"

    def ready(self) -> None:
        from aml import catalog  # noqa: F401  (connects the catalog's change signals)
