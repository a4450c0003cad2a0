"""Roomgate operator: GatewayPolicy -> live gateway limits and connection-based scaling."""
