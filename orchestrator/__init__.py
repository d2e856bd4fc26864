"""Coordinator side: experiment specs, grid expansion, Ray Tune execution, jobs, reports, storage."""
__version__ = "0.1.0"
