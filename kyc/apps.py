from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_tiers(sender, **kwargs) -> None:
    from kyc.models import KycTier
    from kyc.tiers import tiers_ensure

    tiers_ensure(KycTier, using=kwargs.get("using", "default"))


class KycConfig(AppConfig):
    """Know-your-customer tiers, document submissions and their review."""

    name = "kyc"
    verbose_name = "KYC"

    def ready(self) -> None:
        # Migration 0002 seeds the tiers; this puts back any that a database flush removed
        # (as the test runner's does), never changing a tier that exists.
        post_migrate.connect(_ensure_tiers, sender=self, dispatch_uid="kyc.ensure_tiers")
        from kyc import catalog  # noqa: F401  (connects the catalog's change signals)
