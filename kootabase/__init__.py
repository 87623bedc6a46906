"""Kootabase: an open-source spot crypto exchange and its back office."""

from .celery import app as celery_app

__all__ = ("celery_app",)
