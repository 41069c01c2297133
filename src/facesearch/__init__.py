"""facesearch: self-hosted reverse face search.

The core library: decoding, detection, alignment, embedding and the face store, written as
plain functions and small classes that the CLI and the services share.
"""

__version__ = "0.1.0"
