"""What the doors share for one runtime: the tool registry, catalog and client, the policy gate and its
audit, the answer graph's tool step and the A2A agent's task store (`DoorKit`). `apps.doors.app` mounts
the doors on the HTTP app; `dtrag mcp` builds a kit of its own."""

from __future__ import annotations

from apps.doors.a2a_tasks import A2ATaskStore
from apps.doors.mcp_client import McpClient, ToolCatalog
from apps.doors.tool_audit import ToolAudit
from apps.doors.tool_policy import ToolGate
from apps.doors.tool_registry import ToolRegistry
from apps.doors.tool_step import DoorToolStep
from apps.runtime import Runtime


class DoorKit:
    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.audit = ToolAudit(runtime.engine)
        self.gate = ToolGate(settings, self.audit)
        self.registry = ToolRegistry(runtime.engine, settings)
        self.client = McpClient()
        self.catalog = ToolCatalog(self.registry, self.client, settings.tools_catalog_ttl_s)
        self.tool_step = DoorToolStep(runtime, self.catalog, self.client, self.gate)
        self.a2a_tasks = A2ATaskStore(runtime.engine)

    def start(self) -> None:
        """Audit flushing, and the answer graph's tools node (used where `mcp_tools` is on)."""
        self.audit.start()
        self.runtime.pipelines.use_tools(self.tool_step)

    async def close(self) -> None:
        self.runtime.pipelines.use_tools(None)
        await self.audit.stop()
