"""Roomgate auth service."""
