"""Pictures: traversal grids, attention heat-maps, HTML reports."""
