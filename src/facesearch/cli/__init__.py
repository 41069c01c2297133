"""Layer 7, the ``facesearch`` command line (``main``) and its output. Nothing imports it."""
