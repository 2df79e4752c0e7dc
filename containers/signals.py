from django.dispatch import Signal

# Sent inside the transaction that moves a container's records to its new key (update,
# compose recreate, or a same-name re-creation outside DockMon). Receivers in other apps move
# their own rows: kwargs old_key, new_key, old (Container), new (Container).
container_rekeyed = Signal()
