"""Paging the container list: the page's keys first, then only those rows.

Sorting and skipping thousands of full rows (labels, mounts, networks JSON, the command...) to
keep 100 was most of a list request: PostgreSQL spilled the wide sort to disk, SQLite sorted in
a temporary B-tree. Ordering and slicing only the keys of the plain filtered queryset is cheap
(the partial index on (name, key) serves the default order); the view's `page_rows(keys)` then
reads the full rows, with what they need (tags, update flag, host name), for those keys only.
"""

from __future__ import annotations

from django.core.paginator import Paginator

from dockmon_site.api import Pagination


class KeysFirstPaginator(Paginator):
    def __init__(self, object_list, per_page, *, page_rows, **kwargs):
        super().__init__(object_list, per_page, **kwargs)
        self.page_rows = page_rows

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        keys = list(self.object_list.values_list("pk", flat=True)[bottom:top])
        rows = {row.pk: row for row in self.page_rows(keys)}
        return self._get_page([rows[key] for key in keys if key in rows], number, self)


class KeysFirstPagination(Pagination):
    """For views with `page_rows(keys)`: an iterable of the full rows of those keys."""

    def paginate_queryset(self, queryset, request, view=None):
        self._page_rows = view.page_rows
        return super().paginate_queryset(queryset, request, view)

    def django_paginator_class(self, object_list, per_page, **kwargs):
        return KeysFirstPaginator(object_list, per_page, page_rows=self._page_rows, **kwargs)
