"""Plain helper modules for the tests: services, processes, fake providers, factories. Fixtures live in
tests/conftest.py; test modules import from here, never from each other."""
