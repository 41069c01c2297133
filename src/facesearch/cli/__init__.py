"""Tier 6, the ``facesearch`` command line (``main``) and its output. Nothing imports it."""
