"""Roomgate roomauthz service."""
