"""The one table of monitoring: a per-minute sample of the orders placed.

Counting the orders of a recent minute from the orders table would need an index on its
creation time, one more index to write on the hottest insert of the platform. Instead a
periodic task (``monitoring.tasks.order_sample``, every minute) notes the highest order id
and counts the orders above the previous sample's, a primary-key range of about one
minute's orders, once. The dashboard then reads at most 60 rows of this table.

The model also carries the dashboard's permission, ``monitoring.view_dashboard``.
"""

from __future__ import annotations

from django.db import models


class OrderSample(models.Model):
    minute = models.DateTimeField(unique=True, help_text="When it was taken, to the minute.")
    order_id_max = models.BigIntegerField(help_text="The highest order id then (0: no order yet).")
    orders = models.BigIntegerField(
        null=True, blank=True, help_text="Orders placed since the previous sample (empty: no previous sample)."
    )
    minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Minutes since the previous sample (empty: no previous sample)."
    )

    class Meta:
        ordering = ["-minute"]
        default_permissions = ()
        permissions = [("view_dashboard", "Can view the health dashboard")]

    def __str__(self) -> str:
        return f"orders at {self.minute:%Y-%m-%d %H:%M}"
