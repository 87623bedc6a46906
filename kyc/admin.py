"""Back office for KYC: the tiers (edited with ``kyc.change_kyctier``), users' tiers, and
the review queue of submissions. Reviewing — opening documents, approving, rejecting with
a reason — needs ``kyc.review_kycsubmission`` (the ``compliance`` role); the rest reads.

Documents are streamed by ``document_view`` only, after the permission check, with an
audit event per opening; no URL reaches the private storage otherwise.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from kootabase.admin import ReadOnlyAdmin, control_run
from kootabase.errors import ServiceError
from kyc import services
from kyc.models import DocumentKind, KycProfile, KycSubmission, KycTier, SubmissionStatus

REVIEW = "kyc.review_kycsubmission"


class TierForm(forms.ModelForm):
    required_documents = forms.MultipleChoiceField(
        choices=DocumentKind.choices, widget=forms.CheckboxSelectMultiple, required=False
    )

    class Meta:
        model = KycTier
        fields = (
            "name",
            "requirements",
            "required_documents",
            "withdrawal_limit_24h",
            "transfer_limit_24h",
            "fiat_allowed",
        )


@admin.register(KycTier)
class KycTierAdmin(admin.ModelAdmin):
    form = TierForm
    list_display = ("level", "name", "withdrawal_limit_24h", "transfer_limit_24h", "fiat_allowed", "documents")
    readonly_fields = ("level", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the levels 0-3 are fixed; their content is edited

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Documents")
    def documents(self, tier: KycTier) -> str:
        return ", ".join(tier.required_documents) or "-"


@admin.register(KycProfile)
class KycProfileAdmin(ReadOnlyAdmin):
    list_display = ("user", "tier", "updated_at")
    list_filter = ("tier",)
    search_fields = ("user__email",)
    list_select_related = ("user", "tier")


class ReviewForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    reason = forms.CharField(
        required=False, max_length=500, widget=forms.Textarea(attrs={"rows": 3}), help_text="Required to reject."
    )


@admin.register(KycSubmission)
class KycSubmissionAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "tier", "status", "created_at", "decided_by", "decided_at", "review_link")
    list_filter = ("status", "tier")
    search_fields = ("=id", "user__email")
    list_select_related = ("user", "tier", "decided_by")
    ordering = ("id",)
    readonly_fields = ("user", "tier", "status", "reason", "decided_by", "decided_at", "created_at")
    exclude = ("pending_user",)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        """Opens on the queue: the pending submissions, oldest first."""
        if not request.GET and self.has_view_permission(request):
            return HttpResponseRedirect(f"{request.path}?status__exact={SubmissionStatus.PENDING}")
        return super().changelist_view(request, extra_context)

    def has_review_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REVIEW)

    @admin.display(description="Review")
    def review_link(self, submission: KycSubmission) -> str:
        url = reverse("admin:kyc_kycsubmission_review", args=[submission.pk])
        return format_html('<a href="{}">{}</a>', url, "Review" if submission.status == "pending" else "Open")

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("<int:submission_id>/review/", wrap(self.review_view), name="kyc_kycsubmission_review"),
            path(
                "<int:submission_id>/documents/<int:document_id>/",
                wrap(self.document_view),
                name="kyc_kycsubmission_document",
            ),
            *super().get_urls(),
        ]

    def review_view(self, request: HttpRequest, submission_id: int) -> HttpResponse:
        """The submission, its documents and the decision (approve, or reject with a reason)."""
        if not self.has_review_permission(request):
            raise PermissionDenied
        submission = get_object_or_404(
            KycSubmission.objects.select_related("user", "tier", "decided_by"), pk=submission_id
        )
        form = ReviewForm(request.POST or None)

        def decide(data: dict[str, Any]) -> str:
            if data["decision"] == "approve":
                services.kyc_submission_approve(submission_id=submission.pk, staff=request.user, request=request)
                return (
                    f"Submission {submission.pk} approved: {submission.user} is at tier {submission.tier_id} or above."
                )
            services.kyc_submission_reject(
                submission_id=submission.pk, staff=request.user, reason=data["reason"], request=request
            )
            return f"Submission {submission.pk} rejected."

        if control_run(self, request, form, decide):
            return HttpResponseRedirect(reverse("admin:kyc_kycsubmission_changelist"))
        documents = [
            (document, reverse("admin:kyc_kycsubmission_document", args=[submission.pk, document.pk]))
            for document in submission.documents.all()
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": f"KYC submission {submission.pk}",
            "opts": self.model._meta,
            "submission": submission,
            "documents": documents,
            "form": form,
            "pending": submission.status == SubmissionStatus.PENDING,
        }
        return TemplateResponse(request, "admin/kyc/review.html", context)

    def document_view(self, request: HttpRequest, submission_id: int, document_id: int) -> FileResponse:
        """Streams one document to a reviewer; audited. Never cached, never run by the browser."""
        if not self.has_review_permission(request):
            raise PermissionDenied
        try:
            document, handle = services.kyc_document_open(
                submission_id=submission_id, document_id=document_id, staff=request.user, request=request
            )
        except ServiceError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(reverse("admin:kyc_kycsubmission_review", args=[submission_id]))
        extension = document.file.name.rsplit(".", 1)[-1]
        response = FileResponse(
            handle,
            content_type=document.content_type,
            filename=f"submission-{submission_id}-{document.kind}.{extension}",
        )
        response["Cache-Control"] = "private, no-store"
        response["Content-Security-Policy"] = "sandbox; default-src 'none'; img-src 'self'; object-src 'self'"
        return response
