from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """The health dashboard of the back office and the Prometheus endpoint."""

    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        from monitoring import workers

        workers.connect_signals()
