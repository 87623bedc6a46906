"""KYC endpoints: each view validates its input, calls one service or selector, shapes the output."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kootabase.api.serializers import ErrorSerializer
from kyc import selectors, services
from kyc.api import serializers as s

ERRORS = dict.fromkeys((400, 401, 403, 409, 429), ErrorSerializer)


class KycStatusView(APIView):
    """Your KYC tier, its limits, how much of them the last 24 hours used, and your pending
    submission."""

    @extend_schema(tags=["kyc"], responses={200: s.KycStatusSerializer, 401: ErrorSerializer})
    def get(self, request: Request) -> Response:
        return Response(s.KycStatusSerializer(selectors.kyc_status_of(user=request.user)).data)


class KycTiersView(APIView):
    """Every tier: what it needs and what it allows."""

    @extend_schema(tags=["kyc"], responses={200: s.KycTierSerializer(many=True), 401: ErrorSerializer})
    def get(self, request: Request) -> Response:
        return Response(s.KycTierSerializer(selectors.tiers_list(), many=True).data)


class KycSubmissionsView(generics.ListAPIView):
    """Your submissions, newest first, and sending one."""

    serializer_class = s.KycSubmissionSerializer
    parser_classes = [MultiPartParser]

    def get_queryset(self):
        return selectors.submissions_of_user(user=self.request.user)

    @extend_schema(tags=["kyc"], responses={200: s.KycSubmissionSerializer(many=True), 401: ErrorSerializer})
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=["kyc"],
        request={"multipart/form-data": s.KycSubmissionInput},
        responses={201: s.KycSubmissionSerializer, **ERRORS},
        description="Ask for a higher tier (multipart/form-data): `level` and one file per document kind the "
        "tier requires (JPEG, PNG or PDF, at most KYC_DOCUMENT_MAX_BYTES each). One pending submission at a time.",
    )
    def post(self, request: Request) -> Response:
        data = s.KycSubmissionInput(data=request.data)
        data.is_valid(raise_exception=True)
        submission = services.kyc_submission_create(
            user=request.user,
            level=data.validated_data["level"],
            documents=data.documents(),
            request=request._request,
        )
        return Response(s.KycSubmissionSerializer(submission).data, status=status.HTTP_201_CREATED)


class KycSubmissionDetailView(APIView):
    @extend_schema(tags=["kyc"], responses={200: s.KycSubmissionSerializer, 401: ErrorSerializer, 404: ErrorSerializer})
    def get(self, request: Request, submission_id: int) -> Response:
        submission = selectors.submission_get_own(user=request.user, submission_id=submission_id)
        return Response(s.KycSubmissionSerializer(submission).data)
