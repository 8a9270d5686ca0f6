"""Challenges run by organisations (issue #10): goals, live progress, settlement with rewards."""
