"""A swap records the market whose matcher executes it (its route's first market), and
the pending swaps are read per market through (status, market, id)."""

from collections import defaultdict

import django.db.models.deletion
from django.db import migrations, models

_CHUNK = 1000


def fill_market(apps, schema_editor):
    """Each existing swap's market: its route's first market, by symbol (left empty when
    no such market exists)."""
    Market = apps.get_model("orders", "Market")
    SwapExecution = apps.get_model("orders", "SwapExecution")
    market_ids = dict(Market.objects.values_list("symbol", "pk"))
    swaps_of: dict[int, list[int]] = defaultdict(list)
    rows = SwapExecution.objects.filter(market__isnull=True).values_list("pk", "route")
    for pk, route in rows.iterator(chunk_size=_CHUNK):
        market_id = market_ids.get(route[0]["market"]) if route else None
        if market_id is not None:
            swaps_of[market_id].append(pk)
    for market_id, pks in swaps_of.items():
        for start in range(0, len(pks), _CHUNK):
            SwapExecution.objects.filter(pk__in=pks[start : start + _CHUNK]).update(market_id=market_id)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0005_order_cancel_requested_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="swapexecution",
            name="market",
            field=models.ForeignKey(
                blank=True,
                help_text="The route's first market: the matcher process that runs it executes the swap.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="orders.market",
            ),
        ),
        migrations.AddIndex(
            model_name="swapexecution",
            index=models.Index(fields=["status", "market", "id"], name="orders_swap_status_market_id"),
        ),
        migrations.RemoveIndex(
            model_name="swapexecution",
            name="orders_swap_status_id",
        ),
        migrations.RunPython(fill_market, migrations.RunPython.noop),
    ]
