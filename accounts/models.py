"""The platform's user (email is the login) and the API keys of bots."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils.crypto import salted_hmac

phone_number_validator = RegexValidator(
    regex=r"^\+[1-9]\d{6,14}$",
    message="Enter the phone number in international format, e.g. +14155550123.",
    code="invalid_phone_number",
)


def normalize_email(email: str) -> str:
    """Emails are compared and stored in lower case: one person, one account."""
    return email.strip().lower()


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        if not email:
            raise ValueError("An email is required.")
        user = self.model(email=normalize_email(email), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.setdefault("is_staff", True)
        fields.setdefault("is_superuser", True)
        return self.create_user(email, password, **fields)

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email=normalize_email(username or ""))


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(unique=True, max_length=254)
    name = models.CharField(max_length=150, blank=True)
    phone_number = models.CharField(max_length=16, blank=True, validators=[phone_number_validator])
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May log in to the back office.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Bumped by "log out everywhere": every session and access token issued before it stops working.
    auth_epoch = models.PositiveIntegerField(default=0, editable=False)
    # A frozen account can log in and look, but moves nothing: no orders, swaps, transfers
    # or withdrawals (``accounts.services.user_check_not_frozen``). Set by compliance or staff.
    frozen_at = models.DateTimeField(null=True, blank=True, editable=False)
    frozen_reason = models.CharField(max_length=200, blank=True, editable=False)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["id"]
        permissions = [
            ("freeze_user", "Can freeze and unfreeze an account"),
            ("reset_otp", "Can reset a user's two-factor authentication"),
        ]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def is_frozen(self) -> bool:
        return self.frozen_at is not None

    def _get_session_auth_hash(self, secret: str | None = None) -> str:
        # Django's session check (a session stays valid while this hash is unchanged), with
        # the epoch mixed in so that "log out everywhere" ends every session at once.
        key_salt = "accounts.User.get_session_auth_hash"
        return salted_hmac(
            key_salt, f"{self.password}:{self.auth_epoch}", secret=secret, algorithm="sha256"
        ).hexdigest()


class ApiKeyScope(models.TextChoices):
    READ = "read", "Read account data and orders"
    TRADE = "trade", "Place and cancel orders"
    WITHDRAW = "withdraw", "Request withdrawals"


class ApiKey(models.Model):
    """A bot's credential: a public key id and a secret that signs each request (HMAC-SHA256).

    The secret is stored encrypted (``accounts.api_keys``), shown once at creation. Revoked
    keys are kept for the record and refused.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    label = models.CharField(max_length=100)
    key = models.CharField(max_length=64, unique=True, help_text="The public key id, sent as X-KB-APIKEY.")
    secret_encrypted = models.TextField(editable=False)
    scopes = models.JSONField(default=list, help_text='Any of "read", "trade", "withdraw".')
    ip_allowlist = models.JSONField(default=list, blank=True, help_text="IP addresses or networks; empty: any.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.label} ({self.key[:8]}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
