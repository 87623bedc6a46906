import pytest
from django.contrib.auth.models import Group
from django.db import transaction

from accounts.models import User
from audit.models import AppendOnlyError, AuditEvent
from audit.services import audit_record


@pytest.mark.django_db
def test_record_and_never_change(user, rf):
    request = rf.get("/", REMOTE_ADDR="198.51.100.9", HTTP_USER_AGENT="pytest")
    event = audit_record(action="test.thing", actor=user, target=user, request=request, details={"k": 1})
    assert (event.actor_email, event.target_type, event.target_id, event.ip, event.user_agent) == (
        user.email,
        "accounts.user",
        str(user.pk),
        "198.51.100.9",
        "pytest",
    )
    event.action = "changed"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(action="changed")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "test.thing"


@pytest.mark.django_db
def test_an_event_rolls_back_with_its_change(user):
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record(action="test.rolled_back", actor=user)
        raise RuntimeError
    assert not AuditEvent.objects.filter(action="test.rolled_back").exists()


@pytest.mark.django_db
def test_no_permission_to_change_the_trail_exists():
    from django.contrib.auth.models import Permission

    codenames = set(Permission.objects.filter(content_type__app_label="audit").values_list("codename", flat=True))
    assert codenames == {"view_auditevent"}


@pytest.mark.django_db
def test_every_admin_change_is_recorded(staff_client):
    client = staff_client("admin")
    target = User.objects.create_user(email="someone@example.com", password="x")
    support = Group.objects.get(name="support")
    response = client.post(
        f"/admin/accounts/user/{target.pk}/change/",
        {"email": target.email, "name": "", "phone_number": "", "is_active": "on", "groups": [support.pk]},
        REMOTE_ADDR="192.0.2.44",
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="admin.change")
    assert event.actor_email == "admin@example.com"
    assert (event.target_type, event.target_id, event.ip) == ("accounts.user", str(target.pk), "192.0.2.44")
    assert event.details["change"] == [{"changed": {"fields": ["Groups"]}}]


@pytest.mark.django_db
def test_admin_deletions_are_recorded_one_by_one(admin_client):
    for name in ("desk-a", "desk-b"):
        Group.objects.create(name=name)
    ids = list(Group.objects.filter(name__startswith="desk-").values_list("pk", flat=True))
    response = admin_client.post(
        "/admin/auth/group/", {"action": "delete_selected", "_selected_action": ids, "post": "yes"}
    )
    assert response.status_code == 302
    assert not Group.objects.filter(pk__in=ids).exists()
    deleted = AuditEvent.objects.filter(action="admin.delete", target_type="auth.group")
    assert sorted(int(e.target_id) for e in deleted) == sorted(ids)


def test_every_registered_model_admin_is_audited():
    from django.contrib import admin

    from audit.mixins import AuditedAdminMixin

    assert admin.site._registry
    assert all(isinstance(model_admin, AuditedAdminMixin) for model_admin in admin.site._registry.values())


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "can_view"),
    [("admin", True), ("compliance", True), ("support", False), ("accountant", False), ("market-operator", False)],
)
def test_the_trail_is_visible_to_admin_and_compliance_only(staff_client, user, role, can_view):
    event = audit_record(action="test.visible", actor=user)
    client = staff_client(role)
    assert client.get("/admin/audit/auditevent/").status_code == (200 if can_view else 403)
    assert client.get(f"/admin/audit/auditevent/{event.pk}/change/").status_code == (200 if can_view else 403)
    # nobody adds, edits or deletes
    assert client.get("/admin/audit/auditevent/add/").status_code == 403
    client.post(f"/admin/audit/auditevent/{event.pk}/change/", {"action": "forged"})
    assert client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).action == "test.visible"


@pytest.mark.django_db
def test_even_a_superuser_cannot_change_the_trail(admin_client, user):
    event = audit_record(action="test.superuser", actor=user)
    assert admin_client.get(f"/admin/audit/auditevent/{event.pk}/change/").status_code == 200
    assert admin_client.get("/admin/audit/auditevent/add/").status_code == 403
    assert admin_client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    response = admin_client.post(
        "/admin/audit/auditevent/", {"action": "delete_selected", "_selected_action": [event.pk]}
    )
    assert AuditEvent.objects.filter(pk=event.pk).exists()
    assert response.status_code in (200, 302)
