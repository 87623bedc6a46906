from django.urls import path

from kyc.api import views

urlpatterns = [
    path("kyc", views.KycStatusView.as_view(), name="kyc-status"),
    path("kyc/tiers", views.KycTiersView.as_view(), name="kyc-tiers"),
    path("kyc/submissions", views.KycSubmissionsView.as_view(), name="kyc-submissions"),
    path("kyc/submissions/<int:submission_id>", views.KycSubmissionDetailView.as_view(), name="kyc-submission"),
]
