"""Measured figures (wall time, memory, decision quality); never timed assertions in tests."""
