"""The shared vocabulary: ids, stream events, API schemas and tables.

Imports nothing else of the project, so every other package may import it.
"""
