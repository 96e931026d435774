"""Offline diagnosis of a network (``fumd probe``): nothing here is in the learning path."""
