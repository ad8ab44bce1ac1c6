"""The registry: tables, queries, pydantic schemas and settings shared by the API and the worker.

Imports no torch. Query modules take a ``Session`` first and keyword-only arguments after it;
they flush but never commit: the caller owns the transaction (``db.session_scope``).
"""
