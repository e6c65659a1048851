"""Staging: one module per conversion; stateless and idempotent."""
