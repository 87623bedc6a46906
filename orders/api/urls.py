from django.urls import path

from orders.api import views

urlpatterns = [
    path("orders", views.OrdersView.as_view(), name="orders"),
    path("orders/batch", views.OrderBatchView.as_view(), name="orders-batch"),
    path("orders/<int:order_id>", views.OrderDetailView.as_view(), name="order-detail"),
    path("trades", views.TradesView.as_view(), name="trades"),
    path("positions", views.PositionsView.as_view(), name="positions"),
    path("positions/<str:asset>/close", views.PositionCloseView.as_view(), name="position-close"),
    path("swap/quote", views.SwapQuoteView.as_view(), name="swap-quote"),
    path("swap", views.SwapView.as_view(), name="swap"),
    path("swap/<int:swap_id>", views.SwapDetailView.as_view(), name="swap-detail"),
]
