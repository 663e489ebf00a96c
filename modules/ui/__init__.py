"""The Gradio web UI: one file per tab; no torch code here (it calls ``modules.studio``)."""
