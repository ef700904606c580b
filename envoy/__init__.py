"""Envoy bootstrap template(s), rendered by :mod:`sutazai.gateway.bootstrap`."""
