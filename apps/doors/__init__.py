"""Doors: other ways into DT-RAG than its REST API, and its ways out (SPEC-DOORS-001).

In: an MCP server (`mcp_server.py`: stdio for desktop agents, streamable HTTP at /mcp), an A2A agent
(`a2a.py`, its tasks in the database: `a2a_tasks.py`), an OpenAI-compatible chat API (`chat_api.py`).
Every one of them, and the REST routes, run the one implementation of each operation (`operations.py`)
through the same key check and rate limiter (`auth.py`). Out: the answer graph's
`tools` node calls registered MCP servers (`tool_registry.py`, `mcp_client.py`, `tool_choice.py`,
`tool_step.py`), every call in and out through one policy gate (`tool_policy.py`) that audits what it
decides (`tool_audit.py`). `kit.py` holds what they share for a runtime, `app.py` mounts them on the app.

An entry-point layer, like `apps/api`: it may use the runtime and every service; nothing below imports it.
"""
