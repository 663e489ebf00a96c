"""ControlNet units: their request fields, control types and preprocessors."""
