"""Machinery shared by several built-in plugins (not a plugin itself)."""
