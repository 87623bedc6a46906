"""Django's MySQL/MariaDB backend, without the per-request connection ping for a
connection in steady use (see ``base``)."""
