"""Privacy: the suppression list and the audit ledger, shared by the gateway and every consumer.

A privacy request names a subject (a ``user_id`` or an ``anonymous_id``, for one
source or for all). Suppressing it puts it on a durable list that every path
consults (``subjects.py``, ``store.py``, ``cache.py``); deleting it also removes
the subject's rows where they live (``consumers/privacy``). Each request is
recorded in the ledger (``ledger.py``, ``request.py``).
"""
