"""Mock tools and their stateful worlds. Importing this package registers every domain's tools."""

from tools.base import MockTool, ToolError, ToolModuleError, World, load_tool_module, mock_tool, registry, run_tool
from tools import weather, email  # noqa: F401  (registration happens on import)
from tools import calendar, files, orders, travel, units  # noqa: F401

__all__ = ["MockTool", "ToolError", "ToolModuleError", "World", "load_tool_module", "mock_tool", "registry", "run_tool"]
