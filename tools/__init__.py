"""Mock tools and their stateful worlds. Importing this package registers every domain's tools.

The folder is the repository's top-level `tools/`; it installs as `harness.tools` (setuptools' package-dir),
so that no top-level `tools` package lands in site-packages, where another project may own the name.
"""

if __name__ != "harness.tools":  # a second copy would hold a second registry, and tools would go missing
    raise ImportError(f"the harness's mock tools are imported as harness.tools, not as {__name__!r}")

from .base import MockTool, ToolError, ToolModuleError, World, load_tool_module, mock_tool, registry, run_tool
from . import weather, email  # noqa: F401  (registration happens on import)
from . import calendar, files, orders, travel, units  # noqa: F401

__all__ = ["MockTool", "ToolError", "ToolModuleError", "World", "load_tool_module", "mock_tool", "registry", "run_tool"]
