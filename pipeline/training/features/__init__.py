"""Frozen-prefix feature cache: frozen stages computed once, served in place of images."""
