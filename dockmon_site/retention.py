"""Retention: delete old rows a batch at a time (short statements and transactions, never one
huge DELETE that locks a table for minutes). The apps' prune tasks say which rows are old and no
longer in use; this only deletes them."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

BATCH_SIZE = 1000


def cutoff(days: int, now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(days=days)


def delete_in_batches(queryset, *, batch_size: int = BATCH_SIZE) -> int:
    """Delete every row of `queryset` (its filter is applied again to each batch, so a row that
    stopped matching in between stays); returns how many rows of its model went."""
    label = queryset.model._meta.label
    total = 0
    while True:
        pks = list(queryset.order_by().values_list("pk", flat=True)[:batch_size])
        if not pks:
            return total
        _, per_model = queryset.filter(pk__in=pks).delete()
        deleted = per_model.get(label, 0)
        total += deleted
        if deleted == 0 or len(pks) < batch_size:
            return total
