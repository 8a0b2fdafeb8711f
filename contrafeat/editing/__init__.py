"""Real-image projection into W+ and editing with Directions artefacts."""
