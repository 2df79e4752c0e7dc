"""Update history that follows a container across re-creations.

Every update (and a re-creation outside DockMon) gives the container a new key; the row of the
old key points at the new one (`replaced_by`). A container's history is the runs of every key
in that chain, both ways from the key one starts at: the page of an old key shows what happened
after, the page of the current key what happened before."""

from __future__ import annotations

from django.db.models import Q

LINEAGE_DEPTH = 50


def lineage_keys(key: str, depth: int = LINEAGE_DEPTH) -> list[str]:
    """`key`, its successors up to the newest, and every predecessor of those (newest first).

    A rolled-back update leaves the failed container's row pointing back at the original, so a
    key may have several predecessors: they are all followed (one query per generation)."""
    from containers.models import Container

    chain = [key]
    for _ in range(depth):
        successor = Container.objects.filter(pk=chain[-1]).values_list("replaced_by", flat=True).first()
        if not successor or successor in chain:
            break
        chain.append(successor)
    keys = list(reversed(chain))
    seen, frontier = set(keys), list(chain)
    for _ in range(depth):
        previous = [k for k in Container.objects.filter(replaced_by__in=frontier).order_by("-first_seen_at").values_list("key", flat=True)
                    if k not in seen]
        if not previous:
            break
        keys += previous
        seen.update(previous)
        frontier = previous
    return keys


def runs_of(user, key: str, queryset=None):
    """The update runs of the container behind `key`, across its re-creations.

    Whoever may view one of the containers of that lineage sees its whole history (a grant moves
    to the new container at each update, so it would otherwise lose the runs before); anyone else
    sees only the runs the general rule shows them."""
    from containers.permissions import visible_containers
    from updates.api.views import runs_visible_to
    from updates.models import UpdateRun

    queryset = UpdateRun.objects.all() if queryset is None else queryset
    keys = lineage_keys(key)
    of_lineage = Q(old_key__in=keys) | Q(new_key__in=keys)
    if user.is_superuser or visible_containers(user).filter(pk__in=keys).exists():
        return queryset.filter(of_lineage)
    return runs_visible_to(user, queryset).filter(of_lineage)
