"""Plain helper modules for the tests: services, processes, fake providers, factories, the channel
contract (channels.py), the app's routes, logging state. Fixtures live in tests/conftest.py; test
modules import from here, never from each other (tests/test_imports.py checks)."""
