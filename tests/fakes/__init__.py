"""Fakes of the services at the broker's outer edge (other processes' HTTP APIs)."""
