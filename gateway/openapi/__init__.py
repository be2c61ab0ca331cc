"""The OpenAPI 3.0 description of the gateway's routes (served at /openapi.json): spec.py puts
it together from parts.py's pieces, the admin routes (admin.py) and the API fronts' (fronts.py)."""

from gateway.openapi.spec import openapi_spec

__all__ = ["openapi_spec"]
