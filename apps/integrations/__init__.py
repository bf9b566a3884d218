"""Adapters that let other frameworks call DT-RAG. Entry points like the CLI: they may build the
composition root (`apps.runtime`)."""
