"""Methodology governance: versions of each action type's methodology and their review by experts."""
