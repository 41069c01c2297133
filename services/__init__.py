"""The four services of the local stack and the cluster, installed as ``facesearch_services``:
each folder wires the common package (``facesearch``) into one process (docs/architecture.md)."""
