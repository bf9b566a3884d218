"""The Ask page: questions, streamed answers with citations, follow-ups, feedback (see apps/api/routers/ask.py)."""
