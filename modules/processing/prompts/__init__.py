"""Prompt text to conditioning: A1111's prompt syntax, emphasis, scheduled and AND prompts, styles,
wildcards, and the <lora:...> network tags.
"""
