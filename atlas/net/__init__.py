"""Switches and the fabric: rendering, device sessions, config diffs, verification, cabling."""
