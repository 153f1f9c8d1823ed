"""Command-line entry points (hydra apps). Each is a thin shell over a library function."""
