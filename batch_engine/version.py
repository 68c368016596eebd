"""The package version (its own module, so that nothing needs to import the package root)."""

__version__ = "0.1.0"
