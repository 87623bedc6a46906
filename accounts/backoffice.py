"""The admin app's configuration, installed in place of ``django.contrib.admin``.

It makes ``django.contrib.admin.site`` the back-office site (``accounts.admin_site``):
2FA for every staff login and an audit event for every change. Kept apart from
``accounts/apps.py`` so it is not mistaken for the accounts app's own configuration.
"""

from django.contrib.admin.apps import AdminConfig


class BackOfficeAdminConfig(AdminConfig):
    default_site = "accounts.admin_site.AdminSite"
