"""Helpers of examples/demo.py: command runner, toy inputs, result readers, HTML report."""
