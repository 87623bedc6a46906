"""The project's own database backends (``DATABASES["default"]["ENGINE"]``)."""
