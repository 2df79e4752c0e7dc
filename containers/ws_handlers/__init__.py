"""The streams of /ws/events/, one module each: events, logs, stats, profiles.

Each handler is owned by one EventsConsumer (containers/consumers.py), the `socket` it is given:
it replies, reports errors and sends through it, and reads the socket's current user and
visibility from it (both change on every access re-check).
"""
