"""Back-office fixtures for the audit trail's tests."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from accounts.models import User
from accounts.tests.helpers import admin_login


@pytest.fixture
def staff_client(db):
    """``staff_client(role)``: a back-office client for a staff member holding ``role``, 2FA-verified."""

    def make(role: str) -> Client:
        staff = User.objects.create_user(email=f"{role}@example.com", password="pw-staff-12345", is_staff=True)
        staff.groups.add(Group.objects.get(name=role))
        return admin_login(Client(), staff)

    return make
