"""Shared layer under every stage: metrics, file-name rules (more to come from preprocess/fileio)."""
