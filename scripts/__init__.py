"""The scripts that ship with the studio; each file holds A1111-style ``Script`` classes."""
