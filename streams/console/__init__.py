"""The web console (``distillwatch console``): the queue of open alerts, one page per alert,
approvals, acknowledgements and false-positive verdicts, on top of the alert store.

Server-rendered HTML (aiohttp + Jinja2, autoescaped) with one small script; every POST is
CSRF-checked and written to the ``actions`` topic as a signed audit record.
"""
