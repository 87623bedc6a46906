from django.apps import AppConfig


class MatchingConfig(AppConfig):
    """The order-book engine (a pure library under matching.engine) and its Django wiring."""

    name = "matching"
    verbose_name = "Matching"
