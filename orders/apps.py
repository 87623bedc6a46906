from django.apps import AppConfig


class OrdersConfig(AppConfig):
    """Markets, order placement, the matcher process and settlement."""

    name = "orders"
    verbose_name = "Orders and markets"

    def ready(self) -> None:
        from orders import catalog  # noqa: F401  (connects the catalog's change signals)
