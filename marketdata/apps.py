from django.apps import AppConfig


class MarketdataConfig(AppConfig):
    """Tickers, depth, trades, candles and the real-time WebSocket feeds."""

    name = "marketdata"
    verbose_name = "Market data"
