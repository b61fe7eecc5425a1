"""Mock tools and their stateful worlds. Importing this package registers every domain's tools."""

from tools.base import MockTool, ToolError, World, mock_tool, registry, run_tool
from tools import weather, email  # noqa: F401  (registration happens on import)

__all__ = ["MockTool", "ToolError", "World", "mock_tool", "registry", "run_tool"]
