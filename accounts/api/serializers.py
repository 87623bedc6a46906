from __future__ import annotations

from rest_framework import serializers

from accounts.models import User, phone_number_validator
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
