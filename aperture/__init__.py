"""aperture: an AI gateway for tailnets."""
