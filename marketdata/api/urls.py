from django.urls import path

from marketdata.api import views

urlpatterns = [
    path("time", views.TimeView.as_view(), name="time"),
    path("markets", views.MarketsView.as_view(), name="markets"),
    path("markets/<str:symbol>", views.MarketDetailView.as_view(), name="market-detail"),
    path("markets/<str:symbol>/ticker", views.TickerView.as_view(), name="market-ticker"),
    path("markets/<str:symbol>/depth", views.DepthView.as_view(), name="market-depth"),
    path("markets/<str:symbol>/trades", views.TradesView.as_view(), name="market-trades"),
    path("markets/<str:symbol>/candles", views.CandlesView.as_view(), name="market-candles"),
    path("tickers", views.TickersView.as_view(), name="tickers"),
    path("rates", views.RatesView.as_view(), name="rates"),
]
