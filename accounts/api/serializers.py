from __future__ import annotations

from rest_framework import serializers

from accounts.models import ApiKey, ApiKeyScope, User, phone_number_validator
from audit import actions
from audit.models import AuditEvent
from kootabase.api.serializers import InputSerializer


class UserSerializer(serializers.ModelSerializer):
    roles = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ("id", "email", "name", "phone_number", "roles", "created_at", "updated_at")
        read_only_fields = fields

    def get_roles(self, user: User) -> list[str]:
        return sorted(group.name for group in user.groups.all())


class RegisterInput(InputSerializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, trim_whitespace=False)
    name = serializers.CharField(max_length=150, required=False, default="", allow_blank=True)
    phone_number = serializers.CharField(
        max_length=16, required=False, default="", allow_blank=True, validators=[phone_number_validator]
    )


class LoginInput(InputSerializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class TokenPairOutput(serializers.Serializer):
    refresh = serializers.CharField()
    access = serializers.CharField()
    user = UserSerializer()


class RefreshInput(InputSerializer):
    refresh = serializers.CharField()


class AccessOutput(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class MeUpdateInput(InputSerializer):
    name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    phone_number = serializers.CharField(
        max_length=16, required=False, allow_blank=True, validators=[phone_number_validator]
    )


class PasswordChangeInput(InputSerializer):
    old_password = serializers.CharField(max_length=128, trim_whitespace=False)
    new_password = serializers.CharField(max_length=128, trim_whitespace=False)


class CsrfOutput(serializers.Serializer):
    csrf_token = serializers.CharField()


class OtpCodeInput(InputSerializer):
    otp_code = serializers.CharField(
        max_length=32,
        required=False,
        allow_blank=True,
        default="",
        help_text="A current authenticator code or a recovery code.",
    )


class OtpStatusOutput(serializers.Serializer):
    enabled = serializers.BooleanField()
    recovery_codes_left = serializers.IntegerField()


class OtpEnrolOutput(serializers.Serializer):
    secret = serializers.CharField(help_text="Base32 secret, for typing into an authenticator app.")
    otpauth_uri = serializers.CharField(help_text="otpauth:// URI to show as a QR code.")


class RecoveryCodesOutput(serializers.Serializer):
    recovery_codes = serializers.ListField(child=serializers.CharField(), help_text="Shown once; each works once.")


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ("id", "key", "label", "scopes", "ip_allowlist", "created_at", "last_used_at")
        read_only_fields = fields


class ApiKeyCreatedSerializer(ApiKeySerializer):
    secret = serializers.SerializerMethodField(help_text="Shown once, now: store it safely.")

    class Meta(ApiKeySerializer.Meta):
        fields = (*ApiKeySerializer.Meta.fields, "secret")
        read_only_fields = fields

    def get_secret(self, api_key: ApiKey) -> str:
        return self.context["secret"]


class ApiKeyCreateInput(InputSerializer):
    label = serializers.CharField(max_length=100)
    scopes = serializers.MultipleChoiceField(choices=ApiKeyScope.choices, allow_empty=False)
    ip_allowlist = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, default=list, max_length=50
    )
    otp_code = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")


class LoginEventSerializer(serializers.ModelSerializer):
    success = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = ("id", "created_at", "success", "ip", "user_agent")
        read_only_fields = fields

    def get_success(self, event: AuditEvent) -> bool:
        return event.action == actions.LOGIN
