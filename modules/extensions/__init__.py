"""Scripts and extensions: the public API (``api``), discovery (``loader``) and per-job running (``runner``)."""
