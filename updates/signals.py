"""Signal receivers of the updates app (connected in UpdatesConfig.ready())."""

from __future__ import annotations


def follow_recreated_container(sender, *, old, new, **kwargs):
    """containers.services.rekey() sends this inside its transaction: move our rows with it."""
    from updates import autoupdate
    from updates.services import move_records

    move_records(old, new)
    autoupdate.move_records(old, new)
