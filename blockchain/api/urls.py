from django.urls import path

from blockchain.api import views

urlpatterns = [
    path("wallets/<str:currency>/deposit-address", views.DepositAddressView.as_view(), name="deposit-address"),
    path("deposits", views.DepositsView.as_view(), name="deposits"),
    path("withdrawals", views.WithdrawalsView.as_view(), name="withdrawals"),
    path("withdrawals/<int:withdrawal_id>", views.WithdrawalDetailView.as_view(), name="withdrawal-detail"),
    path("transactions/<str:transaction_id>", views.TransactionDetailView.as_view(), name="transaction-detail"),
    path("withdrawal-addresses", views.WithdrawalAddressesView.as_view(), name="withdrawal-addresses"),
    path("withdrawal-addresses/<int:entry_id>", views.WithdrawalAddressDetailView.as_view(), name="withdrawal-address"),
    path("withdrawal-addresses/setting", views.AddressBookSettingView.as_view(), name="withdrawal-address-setting"),
]
