"""Data: the procedural 3DShapes world."""
