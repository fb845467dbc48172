"""Accounts, password hashing and bearer tokens."""
