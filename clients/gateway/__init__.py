"""`lml-gateway`: JSON over HTTP and Server-Sent Events for mobile apps, in front of the
inventory service."""
