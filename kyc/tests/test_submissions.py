"""Submitting documents for a higher tier through the REST API: validation by content and
size, nothing stored on a refusal, one pending submission, private files, and the
user's view of their status."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from accounts.tests.helpers import assert_hidden_from_other_users
from audit.models import AuditEvent
from kyc.models import KycDocument, KycSubmission
from kyc.services import kyc_submission_reject
from kyc.tests.conftest import JPEG, PDF, PNG, D, client_of, upload
from kyc.tests.helpers import kyc_verified
from wallets.services import transfer_create
from wallets.tests.factories import UserFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/kyc/submissions"


def stored_files() -> list[Path]:
    root = Path(settings.PRIVATE_MEDIA_ROOT)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def tier_1_body(**overrides):
    body = {
        "level": "1",
        "id_document": upload(JPEG, "passport.jpg", "image/jpeg"),
        "selfie": upload(PNG, "me.png", "image/png"),
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def submit(client, body):
    return client.post(URL, body, format="multipart")


def test_a_submission_stores_its_documents_privately_and_is_audited(alice, alice_client):
    response = submit(alice_client, tier_1_body())
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["level"], body["status"], body["reason"], body["decided_at"]) == (1, "pending", "", None)
    assert [(d["kind"], d["content_type"], d["size"]) for d in body["documents"]] == [
        ("id_document", "image/jpeg", len(JPEG)),
        ("selfie", "image/png", len(PNG)),
    ]
    assert "file" not in str(body) and "private" not in str(body)  # described, never linked
    files = stored_files()
    assert sorted(f.read_bytes() for f in files) == sorted([JPEG, PNG])
    for path in files:
        assert path.relative_to(settings.PRIVATE_MEDIA_ROOT).parts[:2] == ("kyc", str(alice.pk))
        assert "passport" not in path.name and path.stem != "me"  # nothing of the uploaded name is kept
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    event = AuditEvent.objects.get(action="kyc.submitted")
    assert (event.actor_id, event.details) == (alice.pk, {"level": 1, "documents": ["id_document", "selfie"]})


def test_a_pdf_is_accepted_whatever_it_is_called(alice_client):
    body = tier_1_body(selfie=upload(PDF, "selfie.jpg", "image/jpeg"))
    response = submit(alice_client, body)
    assert response.status_code == 201
    assert response.json()["documents"][1]["content_type"] == "application/pdf"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"id_document": upload(b"GIF89a" + b"\x00" * 20, "id.jpg", "image/jpeg")}, "kyc_document_type"),
        ({"selfie": upload(b"<html><script>alert(1)</script>", "me.png", "image/png")}, "kyc_document_type"),
        ({"id_document": upload(b"", "id.jpg", "image/jpeg")}, "kyc_document_empty"),
        ({"id_document": upload(JPEG + b"\x00" * 1000, "big.jpg", "image/jpeg")}, "kyc_document_too_large"),
        ({"selfie": None}, "kyc_documents_missing"),
        ({"passport": upload(JPEG, "p.jpg", "image/jpeg")}, "unknown_field"),
        ({"note": "please hurry"}, "unknown_field"),
        ({"level": "0"}, "level_min_value"),
        ({"level": "4"}, "level_max_value"),
        ({"level": "one"}, "level_invalid"),
        ({"level": None}, "level_required"),
        ({"id_document": "not a file"}, "id_document_invalid"),
    ],
)
def test_bad_submissions_are_refused_and_store_nothing(settings, alice_client, unchanged, overrides, code):
    settings.KYC_DOCUMENT_MAX_BYTES = 1000
    with unchanged():
        response = submit(alice_client, tier_1_body(**overrides))
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == code
    assert stored_files() == []


def test_a_field_sent_twice_is_refused(alice_client, unchanged):
    body = tier_1_body()
    body["selfie"] = [upload(PNG, "a.png", "image/png"), upload(JPEG, "b.jpg", "image/jpeg")]
    with unchanged():
        response = submit(alice_client, body)
    assert (response.status_code, response.json()["code"]) == (400, "repeated_field")
    assert stored_files() == []


def test_json_is_not_accepted(alice_client, unchanged):
    with unchanged():
        response = alice_client.post(URL, {"level": 1}, format="json")
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")


def test_a_higher_tier_needs_its_own_documents(alice_client, unchanged):
    with unchanged():
        response = submit(alice_client, tier_1_body(level="2"))
    assert response.json()["code"] == "kyc_documents_missing"
    assert response.json()["details"]["missing"] == ["proof_of_address"]
    response = submit(alice_client, tier_1_body(level="2", proof_of_address=upload(PDF, "bill.pdf")))
    assert response.status_code == 201


def test_one_pending_submission_at_a_time(alice, alice_client, unchanged):
    first = submit(alice_client, tier_1_body()).json()
    files = stored_files()
    with unchanged():
        response = submit(alice_client, tier_1_body())
    assert (response.status_code, response.json()["code"]) == (409, "kyc_submission_pending")
    assert stored_files() == files
    staff = UserFactory(is_staff=True)
    kyc_submission_reject(submission_id=first["id"], staff=staff, reason="The photo is blurred.")
    assert submit(alice_client, tier_1_body()).status_code == 201


def test_asking_for_the_tier_one_has_is_refused(alice, alice_client, unchanged):
    kyc_verified(alice, level=1)
    with unchanged():
        response = submit(alice_client, tier_1_body())
    assert (response.status_code, response.json()["code"]) == (400, "kyc_level_invalid")


def test_the_status_shows_tier_limits_usage_and_the_pending_submission(alice, bob, alice_client):
    transfer_create(sender=alice, recipient_email=bob.email, currency_code="USDT", amount=D(200), idempotency_key="a")
    status = alice_client.get("/api/v1/kyc").json()
    assert status["tier"] == {
        "level": 0,
        "name": "Unverified",
        "requirements": "Nothing: every account starts here.",
        "required_documents": [],
        "withdrawal_limit_24h": "1000",
        "transfer_limit_24h": "1000",
        "fiat_allowed": False,
    }
    assert status["next_tier"]["level"] == 1
    assert status["next_tier"]["required_documents"] == ["id_document", "selfie"]
    assert (status["reference_currency"], status["withdrawal_used_24h"], status["transfer_used_24h"]) == (
        "USDT",
        "0",
        "200",
    )
    assert status["pending_submission"] is None
    submitted = submit(alice_client, tier_1_body()).json()
    assert alice_client.get("/api/v1/kyc").json()["pending_submission"]["id"] == submitted["id"]


def test_usage_without_a_price_is_shown_as_null(alice, bob, alice_client):
    kyc_verified(alice, level=3)
    transfer_create(sender=alice, recipient_email=bob.email, currency_code="ETH", amount=D(1), idempotency_key="a")
    status = alice_client.get("/api/v1/kyc").json()
    assert (status["tier"]["transfer_limit_24h"], status["transfer_used_24h"]) == (None, None)
    assert status["next_tier"] is None


def test_the_tiers_are_listed(alice_client):
    tiers = alice_client.get("/api/v1/kyc/tiers").json()
    assert [(t["level"], t["transfer_limit_24h"], t["fiat_allowed"]) for t in tiers] == [
        (0, "1000", False),
        (1, "10000", True),
        (2, "100000", True),
        (3, None, True),
    ]


def test_users_list_their_own_submissions_and_others_are_not_found(alice_client, bob):
    mine = submit(alice_client, tier_1_body()).json()
    theirs = submit(client_of(bob), tier_1_body()).json()
    listed = alice_client.get(URL).json()["results"]
    assert [s["id"] for s in listed] == [mine["id"]]
    assert alice_client.get(f"{URL}/{mine['id']}").json() == mine
    assert_hidden_from_other_users(
        alice_client,
        [("GET", f"{URL}/{theirs['id']}", None), ("GET", f"{URL}/999999", None)],
        snapshot=lambda: list(KycSubmission.objects.order_by("id").values_list("id", "status")),
    )


def test_the_endpoints_need_a_login(api_client, unchanged):
    for path in ("/api/v1/kyc", "/api/v1/kyc/tiers", URL, f"{URL}/1"):
        assert api_client.get(path).status_code == 401
    with unchanged():
        assert api_client.post(URL, tier_1_body(), format="multipart").status_code == 401


def test_no_url_serves_a_stored_document(alice_client):
    submit(alice_client, tier_1_body())
    document = KycDocument.objects.first()
    client = Client()
    for path in (
        f"/media/{document.file.name}",
        f"/{document.file.name}",
        f"/private/{document.file.name}",
        f"/static/{document.file.name}",
        f"/var/private/{document.file.name}",
    ):
        assert client.get(path).status_code == 404, path
    with pytest.raises(ValueError, match="no URL"):
        document.file.url
