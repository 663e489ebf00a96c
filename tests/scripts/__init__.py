"""Tests of the built-in scripts in scripts/, run through the studio as users run them."""
