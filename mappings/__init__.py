"""Declarative field mappings, one YAML file per source system (package data)."""
