"""The platform layer: what a process needs from the machine it runs on (CPU threads, memory
policy, atomic file writes, the worker launcher, the machine's description).

Framework-free. It imports nothing else from `common`; the core and the backends build on it.

Platform layer.
"""
