"""Kernel backends for attention and MoE; each declares what it supports in `SUPPORT`."""
