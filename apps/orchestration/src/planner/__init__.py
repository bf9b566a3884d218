"""The query planner (SPEC-PLANNER-001): a multi-part question split into the questions it asks, each
part retrieved with its own strategy into a shared context, and answered from its own evidence.

`planner.QueryPlanner` plans (rules from `apps.text.compound`, or a model), `retrieval` searches the
parts and merges them, `search` is the planned POST /api/v1/search, `compose` answers part by part.
"""
