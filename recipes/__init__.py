"""Recipes that rebuild the project's committed artefacts from nothing."""
