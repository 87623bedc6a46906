from django.apps import AppConfig


class KootabaseConfig(AppConfig):
    """The project package as an app: shared commands (demo data, the embedded runner)."""

    name = "kootabase"
    verbose_name = "Kootabase"
