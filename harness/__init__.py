"""agentic-harness: multi-step tool-calling evals that expose agentic collapse in quantized models."""

__version__ = "0.1.0"
