"""Tests of modules/extensions."""
