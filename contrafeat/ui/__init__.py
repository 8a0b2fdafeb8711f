"""The interactive web editor (optional extra `ui`)."""
