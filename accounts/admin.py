"""Back office for users: admins assign roles (groups) here. Every change lands in the admin log."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import UserCreationForm as BaseUserCreationForm

from accounts.models import User


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
