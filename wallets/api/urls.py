from django.urls import path

from wallets.api import views

urlpatterns = [
    path("currencies", views.CurrencyListView.as_view(), name="currency-list"),
    path("wallets", views.WalletListView.as_view(), name="wallet-list"),
    path("wallets/<str:currency>", views.WalletDetailView.as_view(), name="wallet-detail"),
    path("ledger", views.LedgerView.as_view(), name="ledger"),
    path("transfers", views.TransferCreateView.as_view(), name="transfer-create"),
]
