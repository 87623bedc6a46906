"""Review in the back office: only compliance opens documents, approves and rejects (with a
reason); every decision and every opening is audited; tiers are edited by compliance."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from accounts.models import User
from accounts.tests.helpers import admin_login, staff_member
from audit.models import AuditEvent
from kootabase.errors import ServiceError
from kyc import selectors
from kyc.models import KycSubmission, KycTier
from kyc.services import kyc_level_set, kyc_submission_approve, kyc_submission_create, kyc_submission_reject
from kyc.tests.conftest import JPEG, PNG, D, client_of, upload
from kyc.tests.helpers import kyc_verified
from wallets.services import transfer_create

pytestmark = pytest.mark.django_db
ADMIN = "/admin/kyc/kycsubmission"


def member(role: str) -> User:
    return staff_member(f"{role}@staff.example.com", role)


def staff_client(role: str) -> Client:
    return admin_login(Client(), member(role))


@pytest.fixture
def submission(alice) -> KycSubmission:
    return kyc_submission_create(
        user=alice,
        level=1,
        documents={"id_document": upload(JPEG, "id.jpg"), "selfie": upload(PNG, "me.png")},
    )


@pytest.fixture
def compliance() -> Client:
    return staff_client("compliance")


def test_the_queue_opens_on_pending_submissions(submission, compliance):
    response = compliance.get(f"{ADMIN}/")
    assert response.status_code == 302
    assert response["Location"].endswith("?status__exact=pending")
    page = compliance.get(response["Location"])
    assert page.status_code == 200
    assert f"{ADMIN}/{submission.pk}/review/" in page.content.decode()


def test_compliance_opens_a_document_and_the_opening_is_audited(submission, compliance):
    page = compliance.get(f"{ADMIN}/{submission.pk}/review/")
    assert page.status_code == 200
    document = submission.documents.get(kind="id_document")
    url = f"{ADMIN}/{submission.pk}/documents/{document.pk}/"
    assert url in page.content.decode()
    response = compliance.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == JPEG
    assert response["Content-Type"] == "image/jpeg"
    assert "no-store" in response["Cache-Control"]
    assert response["Content-Security-Policy"].startswith("sandbox")
    assert response["Content-Disposition"] == f'inline; filename="submission-{submission.pk}-id_document.jpg"'
    event = AuditEvent.objects.get(action="kyc.document_viewed")
    assert event.actor.email == "compliance@staff.example.com"
    assert event.details == {"user": "alice@example.com", "document": document.pk, "kind": "id_document"}


def test_a_document_of_another_submission_is_not_served(submission, compliance, bob):
    other = kyc_submission_create(
        user=bob, level=1, documents={"id_document": upload(JPEG, "a"), "selfie": upload(PNG, "b")}
    )
    document = other.documents.first()
    response = compliance.get(f"{ADMIN}/{submission.pk}/documents/{document.pk}/")
    assert response.status_code == 302  # back to the review page, with the error
    assert not AuditEvent.objects.filter(action="kyc.document_viewed").exists()


@pytest.mark.parametrize(("role", "status"), [("admin", 403), ("support", 403), ("accountant", 403)])
def test_other_staff_cannot_open_documents_or_review(submission, role, status):
    client = staff_client(role)
    document = submission.documents.first()
    assert client.get(f"{ADMIN}/{submission.pk}/documents/{document.pk}/").status_code == status
    assert client.get(f"{ADMIN}/{submission.pk}/review/").status_code == status
    assert client.post(f"{ADMIN}/{submission.pk}/review/", {"decision": "approve"}).status_code == status
    submission.refresh_from_db()
    assert submission.status == "pending"
    assert not AuditEvent.objects.filter(action__startswith="kyc.").exclude(action="kyc.submitted").exists()


def test_a_trader_is_sent_to_log_in(submission, alice):
    client = Client()
    client.force_login(alice)
    document = submission.documents.first()
    response = client.get(f"{ADMIN}/{submission.pk}/documents/{document.pk}/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_approving_sets_the_tier_and_is_audited(submission, compliance, alice, bob):
    response = compliance.post(f"{ADMIN}/{submission.pk}/review/", {"decision": "approve", "reason": ""})
    assert response.status_code == 302
    submission.refresh_from_db()
    assert (submission.status, submission.decided_by.email) == ("approved", "compliance@staff.example.com")
    assert submission.pending_user is None and submission.decided_at is not None
    assert selectors.tier_of_user(user=alice).level == 1
    event = AuditEvent.objects.get(action="kyc.submission_approved")
    assert (event.target_id, event.details) == (
        str(submission.pk),
        {"user": "alice@example.com", "level_before": 0, "level_after": 1},
    )
    transfer_create(sender=alice, recipient_email=bob.email, currency_code="USDT", amount=D(5000), idempotency_key="a")


def test_rejecting_needs_a_reason_that_the_user_then_sees(submission, compliance, alice):
    response = compliance.post(f"{ADMIN}/{submission.pk}/review/", {"decision": "reject", "reason": "  "})
    assert response.status_code == 200
    assert "Say why the submission is rejected" in response.content.decode()
    submission.refresh_from_db()
    assert submission.status == "pending"
    assert not AuditEvent.objects.filter(action="kyc.submission_rejected").exists()

    reason = "The selfie does not show the document."
    response = compliance.post(f"{ADMIN}/{submission.pk}/review/", {"decision": "reject", "reason": reason})
    assert response.status_code == 302
    seen = client_of(alice).get(f"/api/v1/kyc/submissions/{submission.pk}").json()
    assert (seen["status"], seen["reason"]) == ("rejected", reason)
    assert selectors.tier_of_user(user=alice).level == 0
    event = AuditEvent.objects.get(action="kyc.submission_rejected")
    assert event.details == {"user": "alice@example.com", "level": 1, "reason": reason}


def test_a_decision_is_taken_once(submission):
    staff = member("compliance")
    kyc_submission_approve(submission_id=submission.pk, staff=staff)
    for decide in (
        lambda: kyc_submission_approve(submission_id=submission.pk, staff=staff),
        lambda: kyc_submission_reject(submission_id=submission.pk, staff=staff, reason="late"),
    ):
        with pytest.raises(ServiceError) as caught:
            decide()
        assert caught.value.code == "kyc_submission_decided"
    assert AuditEvent.objects.filter(action__startswith="kyc.submission_").count() == 1


def test_nobody_reviews_their_own_submission(alice):
    alice.groups.add(Group.objects.get(name="compliance"))
    own = kyc_submission_create(
        user=alice, level=1, documents={"id_document": upload(JPEG, "a"), "selfie": upload(PNG, "b")}
    )
    with pytest.raises(ServiceError) as caught:
        kyc_submission_approve(submission_id=own.pk, staff=alice)
    assert caught.value.code == "kyc_own_submission"
    assert selectors.tier_of_user(user=alice).level == 0


def test_approving_never_lowers_a_tier(submission, alice):
    kyc_verified(alice, level=2)
    kyc_submission_approve(submission_id=submission.pk, staff=member("compliance"))
    assert selectors.tier_of_user(user=alice).level == 2


def test_setting_a_tier_directly_needs_a_reason_and_is_audited(alice):
    staff = member("compliance")
    with pytest.raises(ServiceError) as caught:
        kyc_level_set(user=alice, level=2, actor=staff, reason=" ")
    assert caught.value.code == "reason_required"
    with pytest.raises(ServiceError) as caught:
        kyc_level_set(user=alice, level=7, actor=staff, reason="typo")
    assert caught.value.code == "kyc_level_invalid"
    assert not AuditEvent.objects.filter(action="kyc.level_set").exists()
    kyc_level_set(user=alice, level=2, actor=staff, reason="Known customer")
    kyc_level_set(user=alice, level=2, actor=staff, reason="again")  # no change, no event
    event = AuditEvent.objects.get(action="kyc.level_set")
    assert event.details == {"level_before": 0, "level_after": 2, "reason": "Known customer"}


def test_compliance_edits_a_tier_and_the_limit_applies(compliance, alice, bob):
    tier = KycTier.objects.get(level=0)
    form = {
        "name": "Unverified",
        "requirements": tier.requirements,
        "withdrawal_limit_24h": "1000",
        "transfer_limit_24h": "50",
    }
    response = compliance.post(f"/admin/kyc/kyctier/{tier.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert KycTier.objects.get(level=0).transfer_limit_24h == D(50)
    assert AuditEvent.objects.filter(action="admin.change", target_type="kyc.kyctier").exists()
    with pytest.raises(ServiceError) as caught:
        transfer_create(
            sender=alice, recipient_email=bob.email, currency_code="USDT", amount=D(51), idempotency_key="a"
        )
    assert caught.value.details["limit"] == "50"


def test_the_admin_role_reads_tiers_but_does_not_change_them():
    client = staff_client("admin")
    tier = KycTier.objects.get(level=0)
    assert client.get("/admin/kyc/kyctier/").status_code == 200
    client.post(f"/admin/kyc/kyctier/{tier.pk}/change/", {"name": "Open", "transfer_limit_24h": ""})
    assert KycTier.objects.get(level=0).transfer_limit_24h == D(1000)


def test_the_admin_role_reads_a_submission_but_gets_no_link_to_its_documents(submission):
    page = staff_client("admin").get(f"{ADMIN}/{submission.pk}/change/")
    assert page.status_code == 200
    assert "alice@example.com" in page.content.decode()
    assert "/documents/" not in page.content.decode()
    assert staff_client("support").get(f"{ADMIN}/{submission.pk}/change/").status_code == 403
