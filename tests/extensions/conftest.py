"""Studio fixtures for these tests (see ``tests.studio_fixtures``)."""

from tests.studio_fixtures import data_dir, generate, studio

__all__ = ["data_dir", "generate", "studio"]
