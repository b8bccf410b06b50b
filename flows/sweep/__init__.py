"""Sweeps: a grid of runs under one parent, in-process or as deployment runs on a pool's workers."""
