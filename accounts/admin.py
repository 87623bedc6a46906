"""Back office for users and API keys: admins assign roles (groups) here.

Every change lands in the admin log and the audit trail (the site adds that to every ModelAdmin).
"""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import UserCreationForm as BaseUserCreationForm

from accounts.models import ApiKey, User


class UserCreationForm(BaseUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    add_form = UserCreationForm
    ordering = ("-id",)
    list_display = ("email", "name", "is_active", "is_staff", "roles", "created_at")
    list_filter = ("is_active", "is_staff", "groups")
    search_fields = ("email", "name", "phone_number")
    readonly_fields = ("last_login", "created_at", "updated_at")
    filter_horizontal = ("groups",)
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name", "phone_number")}),
        ("Access", {"fields": ("is_active", "is_staff", "groups")}),
        ("Times", {"fields": ("last_login", "created_at", "updated_at")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    @admin.display(description="Roles")
    def roles(self, user: User) -> str:
        return ", ".join(sorted(g.name for g in user.groups.all()))

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Bots' keys, for review. The secret is never shown; keys are revoked by their owner."""

    list_display = ("label", "user", "key_prefix", "scopes", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("user__email", "label", "key")
    fields = ("user", "label", "key", "scopes", "ip_allowlist", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    list_select_related = ("user",)

    @admin.display(description="Key")
    def key_prefix(self, api_key: ApiKey) -> str:
        return f"{api_key.key[:8]}…"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
