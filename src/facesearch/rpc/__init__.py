"""Layer 4, the gRPC edge: errors to and from status codes and the request metrics interceptor
(``edge``), the services' typed settings (``settings``), the health probe (``health``) and the
public API's typed client (``client``). Imports the codecs and the core, never the Kafka loop."""
