"""Extraction jobs: the job list, the one planner of a job's path (clip, stream, people, people
streamed), one job's stages, a run of many, and the paths themselves (docs/architecture.md)."""
