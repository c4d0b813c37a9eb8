"""Shared by every test folder: pytest puts this folder on `sys.path` (it holds a conftest.py), so
`from cli_helpers import run_cli` works from tests/faults, tests/lightning and the others."""
