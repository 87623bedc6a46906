from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The append-only trail of staff actions and security events."""

    name = "audit"
    verbose_name = "Audit trail"
