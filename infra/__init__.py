"""Netra platform stack: Pulumi program and operator tools for Google Cloud."""
