"""The alert store: ``alerts`` and ``actions`` records kept in a database (issue 15).

Kafka keeps alert changes and the audit trail only for the topics' retention; on-call needs
to look an alert up by id weeks later. :mod:`streams.store.ingest` consumes both topics
into SQLite (default) or PostgreSQL through SQLAlchemy; :mod:`streams.store.queries` reads
them back for ``distillwatch alerts`` and the console.
"""
